// MarketTwin /simulator page: start/stop simulator runs, watch status and trades live.
//
// Plain browser JavaScript, no build step, nothing loaded from another origin. Every value from the
// API reaches the DOM through textContent or an attribute, never parsed as HTML, so data cannot
// become markup. The API key stays in memory only (it is lost on reload); the short-lived JWT it is
// exchanged for is kept in sessionStorage, so a reload stays signed in until the token expires.
// The header names the signed-in user by their name (from GET /profile), with their id beside it.
// Live updates come from the /simulator/ws WebSocket (simulator:trade and simulator:run events);
// the socket reconnects with exponential backoff, and every (re)connection reloads the state so
// nothing sent while it was down is missed.
"use strict";

(() => {
  const TOKEN_KEY = "markettwin.simulator.token";
  const REFRESH_DEBOUNCE_MS = 250;
  const WS_BACKOFF_MIN_MS = 1000;
  const WS_BACKOFF_MAX_MS = 30000;
  const TOKEN_MARGIN_MS = 10000;
  const WS_UNAUTHORIZED = 4401; // the server's close code for a missing, bad or expired token
  const TRADES_LIMIT = 200;
  const RUNS_LIMIT = 100;
  const DECISIONS_LIMIT = 200;
  const STORE_RETRIES = 10; // asking again for a live trade's details before it is stored
  const STORE_RETRY_MS = 1000;

  const state = {
    key: null, // the API key, in memory only
    token: null,
    tokenExp: 0, // ms since epoch
    userId: "",
    userName: "", // from GET /profile; the id is shown until it arrives (or if it cannot)
    selectedRun: null,
    runs: new Map(), // run_id -> RunView (history and active)
    activeIds: [], // run ids /simulator/status listed as active
    trades: new Map(), // trade_id -> TradeView of the selected run
    tradesTotal: 0, // the selected run's trades in the store (the list shows the newest)
    showDecisions: false,
    ws: null,
    wsRetry: 0,
    wsTimer: null,
    wsEvents: 0,
    refreshTimer: null,
    refreshing: null,
    refreshAgain: false,
    tokenTimer: null,
    settleTimers: new Map(), // trade_id -> the timer that asks again once it should have settled
    openTradeId: null,
  };

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
      this.detail = detail;
    }
  }

  // -- formatting (pure) ---------------------------------------------------------------------------

  function trimDecimals(s, min) {
    // "1.750000" -> "1.75" (keeping at least `min` decimals)
    const dot = s.indexOf(".");
    if (dot < 0) return s;
    let end = s.length;
    while (end > dot + 1 + min && s[end - 1] === "0") end--;
    if (end === dot + 1) end = dot;
    return s.slice(0, end);
  }

  function groupThousands(intPart) {
    return intPart.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  }

  function fmtUsd(v, signed = false) {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
    const n = Number(v);
    const abs = trimDecimals(Math.abs(n).toFixed(6), 2);
    const [i, f] = abs.split(".");
    const body = "$" + groupThousands(i) + (f ? "." + f : "");
    if (n < 0) return "-" + body;
    if (signed && n > 0) return "+" + body;
    return body;
  }

  function fmtNum(v, decimals = 6) {
    if (v === null || v === undefined || Number.isNaN(Number(v))) return "–";
    return trimDecimals(Number(v).toFixed(decimals), 0);
  }

  function fmtPct(v) {
    if (v === null || v === undefined) return "–";
    return fmtNum(v, 2) + "%";
  }

  function fmtTime(iso) {
    // "2025-12-06T05:46:40.123456Z" -> "2025-12-06 05:46:40.123 UTC"
    if (!iso) return "–";
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}:\d{2})(\.\d{1,3})?\d*Z$/.exec(String(iso));
    return m ? `${m[1]} ${m[2]}${m[3] || ""} UTC` : String(iso);
  }

  function shortId(id) {
    // ids are ULIDs (time first, random last): keep both ends so ids made in the same instant differ
    const s = String(id || "");
    return s.length > 16 ? `${s.slice(0, 6)}…${s.slice(-8)}` : s;
  }

  function decisionOutcome(d) {
    // a success-span start that passed every check is "eligible" (spans are never traded)
    if (d.taken) return "taken";
    return d.reason === "eligible" ? "eligible" : "skipped";
  }

  // -- DOM helpers ---------------------------------------------------------------------------------

  function el(tag, attrs = {}, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function cell(testid, text, cls) {
    return el("td", { "data-testid": testid, class: cls }, text);
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function showError(id, message) {
    setText(id, message || "");
  }

  // -- token and API -------------------------------------------------------------------------------

  function saveToken() {
    try {
      sessionStorage.setItem(
        TOKEN_KEY,
        JSON.stringify({ token: state.token, exp: state.tokenExp, user_id: state.userId, name: state.userName })
      );
    } catch (_) {
      // storage unavailable (private mode): the token lives in memory only
    }
  }

  function loadToken() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(TOKEN_KEY) || "null");
      if (saved && typeof saved.token === "string" && saved.exp > Date.now() + TOKEN_MARGIN_MS) {
        state.token = saved.token;
        state.tokenExp = saved.exp;
        state.userId = String(saved.user_id || "");
        state.userName = String(saved.name || "");
        return true;
      }
    } catch (_) {
      // a corrupt entry is the same as none
    }
    return false;
  }

  async function readJson(response) {
    const text = await response.text();
    if (!text) return null;
    try {
      return JSON.parse(text);
    } catch (_) {
      return { detail: text };
    }
  }

  function detailOf(data, response) {
    if (data && data.detail !== undefined) {
      return typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail);
    }
    return `HTTP ${response.status} ${response.statusText}`.trim();
  }

  async function exchange(key) {
    // POST /auth/token {"api_key"} -> {"access_token", "token_type", "expires_in", "user_id"}
    let response;
    try {
      response = await fetch("/auth/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ api_key: key }),
      });
    } catch (e) {
      throw new ApiError(0, `cannot reach the server: ${e.message}`);
    }
    const data = await readJson(response);
    if (!response.ok) throw new ApiError(response.status, detailOf(data, response));
    const userId = String(data.user_id || "");
    if (userId !== state.userId) state.userName = ""; // another user's key: their name comes next
    state.token = data.access_token;
    state.tokenExp = Date.now() + Number(data.expires_in || 0) * 1000;
    state.userId = userId;
    saveToken();
    scheduleTokenRefresh();
    renderWho();
  }

  function renderWho() {
    // the user's name in bold, their id beside it in small type and in the tooltip
    const who = $("whoami");
    who.textContent = state.userName || state.userId;
    if (state.userId) who.title = `user id ${state.userId}`;
    else who.removeAttribute("title");
    setText("whoami-id", state.userName ? state.userId : "");
  }

  async function loadProfile() {
    // GET /profile -> {"user_id", "name", thresholds...}: only the name is used here
    try {
      const profile = await api("GET", "/profile");
      if (!profile || String(profile.user_id || "") !== state.userId) return; // signed out or switched
      state.userName = String(profile.name || "");
      saveToken();
      renderWho();
    } catch (_) {
      // the id stays shown; a 401 has already signed the user out
    }
  }

  function scheduleTokenRefresh() {
    clearTimeout(state.tokenTimer);
    if (!state.key) return;
    const wait = Math.max(1000, (state.tokenExp - Date.now()) * 0.8);
    state.tokenTimer = setTimeout(() => {
      if (state.key) exchange(state.key).catch(() => {}); // a failure shows on the next request
    }, wait);
  }

  async function renew() {
    // a new token for the key in memory; a key the server no longer accepts signs the user out
    try {
      await exchange(state.key);
    } catch (e) {
      if (e.status >= 400 && e.status < 500) signOut(`Signed out: ${e.detail}`);
      throw e;
    }
  }

  async function currentToken() {
    if (state.token && state.tokenExp > Date.now() + TOKEN_MARGIN_MS) return state.token;
    if (state.key) {
      await renew();
      return state.token;
    }
    return state.token; // expired and no key: the server answers 401 and we sign out
  }

  async function api(method, path, body, retried = false) {
    const token = await currentToken();
    if (!token) {
      signOut("Sign in with your API key.");
      throw new ApiError(401, "not signed in");
    }
    const init = { method, headers: { Authorization: `Bearer ${token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `cannot reach the server: ${e.message}`);
    }
    if (response.status === 401) {
      if (state.key && !retried) {
        state.token = null;
        await renew();
        return api(method, path, body, true);
      }
      const data = await readJson(response);
      signOut(`Signed out: ${detailOf(data, response)}`);
      throw new ApiError(401, detailOf(data, response));
    }
    const data = await readJson(response);
    if (!response.ok) throw new ApiError(response.status, detailOf(data, response));
    return data;
  }

  // -- sign in / out -------------------------------------------------------------------------------

  function showApp() {
    $("signin").hidden = true;
    $("app").hidden = false;
    $("session").hidden = false;
    renderWho();
  }

  function clearData() {
    state.runs.clear();
    resetTrades();
    state.activeIds = [];
    state.selectedRun = null;
    state.showDecisions = false;
    for (const t of state.settleTimers.values()) clearTimeout(t);
    state.settleTimers.clear();
    for (const id of ["status-balance", "status-pnl", "status-trades", "status-active"]) setText(id, "–");
    renderRuns();
    renderTrades();
    renderDecisionsHidden();
  }

  function signOut(message) {
    state.key = null;
    state.token = null;
    state.tokenExp = 0;
    state.userId = "";
    state.userName = "";
    renderWho();
    clearTimeout(state.tokenTimer);
    clearTimeout(state.refreshTimer);
    try {
      sessionStorage.removeItem(TOKEN_KEY);
    } catch (_) {
      // nothing stored
    }
    closeWs();
    clearData();
    const modal = $("trade-modal");
    if (modal.open) modal.close();
    $("app").hidden = true;
    $("session").hidden = true;
    $("signin").hidden = false;
    showError("signin-error", message || "");
    $("api-key").focus();
  }

  async function onSignIn(event) {
    event.preventDefault();
    const key = $("api-key").value.trim();
    if (!key) {
      showError("signin-error", "Enter your API key.");
      return;
    }
    $("signin-button").disabled = true;
    showError("signin-error", "");
    try {
      await exchange(key);
      state.key = key;
      scheduleTokenRefresh();
      $("api-key").value = "";
      showApp();
      await startSession();
    } catch (e) {
      showError("signin-error", e.detail || e.message);
    } finally {
      $("signin-button").disabled = false;
    }
  }

  async function startSession() {
    connectWs(); // its hello refreshes again, so nothing between this load and the socket is lost
    await Promise.all([loadProfile(), refreshAll().catch(reportError)]);
  }

  function reportError(e) {
    if (!state.token) return; // signed out: the sign-in form says why
    showError("app-error", (e && (e.detail || e.message)) || String(e));
  }

  // -- loading -------------------------------------------------------------------------------------

  function resetTrades() {
    state.trades.clear();
    state.tradesTotal = 0;
  }

  // Two sources tell about a run or a trade: the live one (WebSocket events, the paper service's
  // answers) and the store (ClickHouse, written by the recorder a moment later). A view only ever
  // moves forward (a run's counters grow and it stops once; a trade goes queued -> executed ->
  // settled), so the one further along wins, and a tie goes to the live view.

  function compareRank(a, b) {
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
    return 0;
  }

  function runRank(r) {
    return [r.status === "running" ? 0 : 1, Number(r.decision_count) || 0, Number(r.trade_count) || 0];
  }

  function mergeRun(run, fromStore = false) {
    if (!run || !run.run_id) return;
    const held = state.runs.get(run.run_id);
    const order = held ? compareRank(runRank(run), runRank(held)) : 1;
    if (order > 0 || (order === 0 && !fromStore)) state.runs.set(run.run_id, run);
  }

  const TRADE_STATUS_RANK = { queued: 0, executed: 1, settled: 2 };

  function mergeTrade(trade) {
    const held = state.trades.get(trade.trade_id);
    if (!held) state.tradesTotal = (state.tradesTotal || 0) + 1;
    if (!held || (TRADE_STATUS_RANK[trade.status] ?? 0) >= (TRADE_STATUS_RANK[held.status] ?? 0)) {
      state.trades.set(trade.trade_id, trade);
    }
  }

  async function loadStatus() {
    const s = await api("GET", "/simulator/status");
    setText("status-balance", fmtUsd(s.balance_usd));
    setPnl($("status-pnl"), s.pnl_usd);
    setText("status-trades", String(s.trade_count ?? "–"));
    const active = Array.isArray(s.active) ? s.active : [];
    active.forEach(mergeRun);
    state.activeIds = active.map((r) => r.run_id);
    setText("status-active", String(active.length));
    for (const t of s.recent_trades || []) {
      if (t.run_id === state.selectedRun) mergeTrade(t);
    }
    return active;
  }

  async function loadRuns() {
    const data = await api("GET", `/simulator/runs?limit=${RUNS_LIMIT}`);
    for (const run of data.runs || []) mergeRun(run, true);
  }

  async function loadTrades(runId) {
    const data = await api("GET", `/simulator/runs/${encodeURIComponent(runId)}/trades?limit=${TRADES_LIMIT}`);
    if (state.selectedRun !== runId) return; // the user picked another run meanwhile
    // trades already shown stay: one that came live may not be stored yet
    const stored = data.trades || [];
    const unstored = [...state.trades.keys()].filter((id) => !stored.some((t) => t.trade_id === id)).length;
    for (const t of stored) mergeTrade(t);
    state.tradesTotal = Math.max(Number(data.total ?? 0) + unstored, state.trades.size);
    for (const t of stored) scheduleSettleRefresh(t);
  }

  async function loadDecisions(runId) {
    const data = await api("GET", `/simulator/runs/${encodeURIComponent(runId)}/decisions?limit=${DECISIONS_LIMIT}`);
    if (state.selectedRun !== runId) return;
    renderDecisions(data.decisions || [], data.total);
  }

  function defaultRun() {
    if (state.activeIds.length) return state.activeIds[0];
    const runs = sortedRuns();
    return runs.length ? runs[0].run_id : null;
  }

  async function refreshAll() {
    // one refresh at a time; a request during one runs once more after it
    if (state.refreshing) {
      state.refreshAgain = true;
      return state.refreshing;
    }
    state.refreshing = (async () => {
      try {
        let failure = null;
        do {
          state.refreshAgain = false;
          failure = null;
          // each part on its own: one failing (a 5xx, the network) must not
          // hide the others (history and trades are read from the store)
          const parts = await Promise.allSettled([loadStatus(), loadRuns()]);
          failure = parts.find((r) => r.status === "rejected")?.reason || null;
          if (!state.selectedRun || !state.runs.has(state.selectedRun)) state.selectedRun = defaultRun();
          if (state.selectedRun) {
            try {
              await loadTrades(state.selectedRun);
              if (state.showDecisions) await loadDecisions(state.selectedRun);
            } catch (e) {
              failure = failure || e;
            }
          } else {
            resetTrades();
          }
          renderRuns();
          renderTrades();
        } while (state.refreshAgain);
        if (failure) throw failure;
        showError("app-error", "");
      } finally {
        state.refreshing = null;
      }
    })();
    return state.refreshing;
  }

  function scheduleRefresh(delay = REFRESH_DEBOUNCE_MS) {
    if (!state.token) return;
    clearTimeout(state.refreshTimer);
    state.refreshTimer = setTimeout(() => refreshAll().catch(reportError), delay);
  }

  function scheduleSettleRefresh(trade) {
    // a trade's status (queued -> executed -> settled) is the server's, computed when asked: ask
    // again (once per trade) when its settlement delay has passed, in case no run event comes
    if (trade.status === "settled" || state.settleTimers.has(trade.trade_id)) return;
    const delayS = Math.min(Math.max(Number(trade.settlement_delay_s) || 0, 0), 3600);
    const timer = setTimeout(() => scheduleRefresh(), delayS * 1000 + 500);
    state.settleTimers.set(trade.trade_id, timer);
  }

  // -- rendering -----------------------------------------------------------------------------------

  function pnlClass(value) {
    return Number(value) > 0 ? "gain" : Number(value) < 0 ? "loss" : "";
  }

  function setPnl(node, value) {
    node.textContent = fmtUsd(value, true);
    node.classList.toggle("gain", Number(value) > 0);
    node.classList.toggle("loss", Number(value) < 0);
  }

  function sortedRuns() {
    return [...state.runs.values()].sort((a, b) =>
      a.started_at === b.started_at ? (a.run_id < b.run_id ? 1 : -1) : a.started_at < b.started_at ? 1 : -1
    );
  }

  function runName(run) {
    return run.label || shortId(run.run_id);
  }

  function renderRuns() {
    const runs = sortedRuns();
    // active: running runs (the status call's list, kept current by simulator:run events)
    const active = runs.filter((r) => r.status === "running");
    const activeBody = $("active-runs").tBodies[0];
    activeBody.replaceChildren(
      ...active.map((r) => {
        const tr = el("tr", {
          "data-testid": "active-run",
          "data-run-id": r.run_id,
          class: r.run_id === state.selectedRun ? "selected" : "",
        });
        tr.append(
          cell("run-label", r.label),
          cell("run-id", shortId(r.run_id), "mono"),
          cell("run-keys", (r.opportunity_keys || []).length ? r.opportunity_keys.join(", ") : "all"),
          cell("run-started", fmtTime(r.started_at)),
          cell("run-ends", fmtTime(r.ends_at)),
          cell("run-balance", fmtUsd(r.balance_usd), "num"),
          cell("run-pnl", "", "num"),
          cell("run-trades", r.trade_count, "num")
        );
        setPnl(tr.querySelector('[data-testid="run-pnl"]'), r.pnl_usd);
        tr.querySelector('[data-testid="run-id"]').title = r.run_id;
        const stop = el("button", { type: "button", "data-testid": "stop-run", "data-run-id": r.run_id }, "Stop");
        stop.addEventListener("click", (e) => {
          e.stopPropagation();
          stopRun(r.run_id, stop);
        });
        const td = el("td");
        td.append(stop);
        tr.append(td);
        tr.addEventListener("click", () => selectRun(r.run_id));
        return tr;
      })
    );
    $("no-active").hidden = active.length > 0;
    $("active-runs").hidden = active.length === 0;
    setText("status-active", String(active.length));

    const historyBody = $("runs").tBodies[0];
    historyBody.replaceChildren(
      ...runs.map((r) => {
        const tr = el("tr", {
          "data-testid": "run-row",
          "data-run-id": r.run_id,
          "data-status": r.status,
          tabindex: 0,
          class: r.run_id === state.selectedRun ? "selected" : "",
          "aria-selected": r.run_id === state.selectedRun ? "true" : "false",
        });
        const status = r.stop_reason ? `${r.status} (${r.stop_reason})` : r.status;
        tr.append(
          cell("run-label", r.label),
          cell("run-notes", r.notes, "notes"),
          cell("run-status", status),
          cell("run-started", fmtTime(r.started_at)),
          cell("run-stopped", fmtTime(r.stopped_at)),
          cell("run-starting", fmtUsd(r.starting_usd), "num"),
          cell("run-balance", fmtUsd(r.balance_usd), "num"),
          cell("run-pnl", "", "num"),
          cell("run-trades", r.trade_count, "num")
        );
        setPnl(tr.querySelector('[data-testid="run-pnl"]'), r.pnl_usd);
        tr.title = r.run_id;
        tr.addEventListener("click", () => selectRun(r.run_id));
        tr.addEventListener("keydown", (e) => {
          if (e.key === "Enter") selectRun(r.run_id);
        });
        return tr;
      })
    );
    $("no-runs").hidden = runs.length > 0;
    $("runs").hidden = runs.length === 0;

    const selected = state.selectedRun && state.runs.get(state.selectedRun);
    setText("selected-run", selected ? `of ${runName(selected)}` : "");
    $("selected-run").title = selected ? selected.run_id : "";
    $("decisions-button").disabled = !selected;
  }

  function sortedTrades() {
    return [...state.trades.values()].sort((a, b) =>
      a.executed_at === b.executed_at
        ? a.trade_id < b.trade_id
          ? 1
          : -1
        : a.executed_at < b.executed_at
          ? 1
          : -1
    );
  }

  function renderTrades() {
    const trades = sortedTrades();
    $("trades").tBodies[0].replaceChildren(
      ...trades.map((t) => {
        const tr = el("tr", {
          "data-testid": "trade-row",
          "data-trade-id": t.trade_id,
          "data-status": t.status,
          "data-broken": t.broken ? "true" : "false",
          tabindex: 0,
          class: t.broken ? "broken" : "",
        });
        const pair = t.broken ? `broken (${t.unhedged_size} unhedged)` : "hedged";
        tr.append(
          cell("trade-executed", fmtTime(t.executed_at)),
          cell("trade-key", t.opportunity_key, "mono"),
          cell("trade-status", t.status, `status-${t.status}`),
          cell("trade-requested", t.requested_size, "num"),
          cell("trade-matched", t.matched_size, "num"),
          cell("trade-fill", fmtPct(t.fill_pct), "num"),
          cell("trade-pair", pair, t.broken ? "warn" : ""),
          cell("trade-cost", fmtUsd(t.cost_usd), "num"),
          cell("trade-fees", fmtUsd(t.fees_usd), "num"),
          cell("trade-pnl", "", "num")
        );
        setPnl(tr.querySelector('[data-testid="trade-pnl"]'), t.pnl_usd);
        tr.addEventListener("click", () => openTrade(t.trade_id));
        tr.addEventListener("keydown", (e) => {
          if (e.key === "Enter") openTrade(t.trade_id);
        });
        return tr;
      })
    );
    $("no-trades").hidden = trades.length > 0;
    const total = Math.max(state.tradesTotal || 0, trades.length);
    setText("trades-total", total > trades.length ? `(newest ${trades.length} of ${total})` : "");
    $("trades").hidden = trades.length === 0;
  }

  function renderDecisionsHidden() {
    $("decisions-panel").hidden = true;
    $("decisions").tBodies[0].replaceChildren();
    setText("decisions-total", "");
    setText("decisions-button", "Show decisions");
  }

  function renderDecisions(decisions, total) {
    $("decisions-panel").hidden = false;
    setText("decisions-button", "Hide decisions");
    const n = Number(total ?? decisions.length);
    setText("decisions-total", n > decisions.length ? `(newest ${decisions.length} of ${n})` : `(${n})`);
    $("decisions").tBodies[0].replaceChildren(
      ...decisions.map((d) => {
        const tr = el("tr", {
          "data-testid": "decision-row",
          "data-decision-id": d.decision_id,
          "data-taken": d.taken ? "true" : "false",
          class: decisionOutcome(d),
        });
        tr.append(
          cell("decision-at", fmtTime(d.decided_at)),
          cell("decision-source", d.decision_source),
          cell("decision-key", d.opportunity_key, "mono"),
          cell("decision-outcome", decisionOutcome(d)),
          cell("decision-reason", d.reason),
          cell("decision-edge", fmtNum(d.net_edge_cents, 4), "num"),
          cell("decision-size", d.size, "num"),
          cell("decision-detail", d.detail, "notes")
        );
        if (d.trade_id) {
          tr.classList.add("link");
          tr.addEventListener("click", () => openTrade(d.trade_id));
        }
        return tr;
      })
    );
  }

  // -- actions -------------------------------------------------------------------------------------

  async function selectRun(runId) {
    if (state.selectedRun === runId) return;
    state.selectedRun = runId;
    resetTrades();
    renderRuns();
    renderTrades();
    if (state.showDecisions) $("decisions").tBodies[0].replaceChildren();
    try {
      await loadTrades(runId);
      renderTrades();
      if (state.showDecisions) await loadDecisions(runId);
    } catch (e) {
      reportError(e);
    }
  }

  async function toggleDecisions() {
    state.showDecisions = !state.showDecisions;
    if (!state.showDecisions) {
      renderDecisionsHidden();
      return;
    }
    if (state.selectedRun) await loadDecisions(state.selectedRun).catch(reportError);
  }

  function numberOrRaw(text) {
    // a number when the text is one; otherwise the text itself, so the API names the bad value
    const s = text.trim();
    if (s === "") return undefined;
    return /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s) ? Number(s) : s;
  }

  function list(text) {
    return text
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean);
  }

  function startBody() {
    // proto.paper.StartRequest; the API validates every field and names what is wrong
    const body = { starting_usd: numberOrRaw($("starting-usd").value) };
    if (body.starting_usd === undefined) delete body.starting_usd;
    const keys = list($("opportunity-keys").value);
    if (keys.length === 1) body.opportunity_key = keys[0];
    else if (keys.length > 1) body.opportunity_keys = keys;
    const duration = numberOrRaw($("duration-minutes").value);
    if (duration !== undefined) body.duration_minutes = duration;
    const label = $("label").value.trim();
    if (label) body.label = label;
    const notes = $("notes").value.trim();
    if (notes) body.notes = notes;
    const filters = {};
    const venues = list($("filter-venues").value);
    if (venues.length) filters.venues = venues;
    const strategies = list($("filter-strategies").value);
    if (strategies.length) filters.strategies = strategies;
    const instruments = list($("filter-instruments").value);
    if (instruments.length) filters.instruments = instruments;
    const minEdge = numberOrRaw($("filter-min-edge").value);
    if (minEdge !== undefined) filters.min_net_edge_cents = minEdge;
    if (Object.keys(filters).length) body.filters = filters;
    return body;
  }

  async function onStart(event) {
    event.preventDefault();
    const button = $("start-button");
    button.disabled = true;
    showError("start-error", "");
    try {
      const data = await api("POST", "/simulator/start", startBody());
      const run = data.run;
      setText("start-warning", (data.warnings || []).join(" "));
      mergeRun(run);
      state.selectedRun = run.run_id;
      resetTrades();
      renderRuns();
      renderTrades();
      $("start-form").dataset.lastRun = run.run_id;
      await refreshAll();
    } catch (e) {
      if (state.token) showError("start-error", e.detail || e.message);
    } finally {
      button.disabled = false;
    }
  }

  async function stopRun(runId, button) {
    button.disabled = true;
    try {
      const data = await api("POST", "/simulator/stop", { run_id: runId });
      (data.runs || []).forEach(mergeRun);
      renderRuns();
      showError("app-error", "");
      scheduleRefresh(0);
    } catch (e) {
      button.disabled = false;
      reportError(e);
    }
  }

  // -- trade detail modal --------------------------------------------------------------------------

  function fieldGroup(name, rows) {
    // one column of the summary: label and value side by side, a line each
    const dl = el("dl", { "aria-label": name });
    for (const [key, label, value, cls] of rows) {
      dl.append(el("dt", {}, label), el("dd", { "data-testid": `trade-field-${key}`, class: cls }, value));
    }
    return dl;
  }

  function clearTradeDetail() {
    showError("trade-modal-error", "");
    $("trade-fields").replaceChildren();
    $("trade-legs").tBodies[0].replaceChildren();
    $("trade-checks").tBodies[0].replaceChildren();
    $("trade-balance").tBodies[0].replaceChildren();
    setText("trade-decision-summary", "");
  }

  async function openTrade(tradeId, attempt = 0) {
    const modal = $("trade-modal");
    if (attempt === 0) {
      state.openTradeId = tradeId;
      setText("trade-modal-id", tradeId);
      clearTradeDetail();
      modal.dataset.state = "loading";
      if (!modal.open) modal.showModal();
    }
    try {
      const data = await api("GET", `/simulator/trades/${encodeURIComponent(tradeId)}`);
      if (state.openTradeId !== tradeId) return;
      clearTradeDetail();
      renderTradeDetail(data);
      modal.dataset.state = "loaded";
    } catch (e) {
      if (state.openTradeId !== tradeId) return;
      const live = state.trades.get(tradeId);
      if (e.status === 404 && live && attempt < STORE_RETRIES) {
        // a trade that just came live is recorded a moment later: show what the event said and
        // ask again shortly for its decision and balance changes
        clearTradeDetail();
        renderTradeDetail({ trade: live, decision: null, balance_changes: [] });
        setText("trade-decision-summary", "being recorded: details follow in a moment");
        modal.dataset.state = "pending";
        setTimeout(() => {
          if (state.openTradeId === tradeId) openTrade(tradeId, attempt + 1);
        }, STORE_RETRY_MS);
        return;
      }
      modal.dataset.state = "error";
      showError("trade-modal-error", e.detail || e.message);
    }
  }

  function renderTradeDetail(data) {
    const t = data.trade;
    // four short columns (status and times, sizes, money, ids) so the modal fits a laptop screen
    $("trade-fields").replaceChildren(
      fieldGroup("Status and times", [
        ["status", "Status", t.status, `key status-${t.status}`],
        ["executed_at", "Executed", fmtTime(t.executed_at)],
        ["settled_at", "Settles", fmtTime(t.settled_at)],
        ["settlement_delay_s", "Settlement delay", `${fmtNum(t.settlement_delay_s, 3)} s`],
      ]),
      fieldGroup("Sizes", [
        ["requested_size", "Requested", t.requested_size],
        ["matched_size", "Matched", t.matched_size],
        ["fill_pct", "Fill", fmtPct(t.fill_pct)],
        ["broken", "Pair", t.broken ? `broken (${t.unhedged_size} unhedged)` : "hedged", t.broken ? "warn" : null],
      ]),
      fieldGroup("Money", [
        ["pnl_usd", "P&L", fmtUsd(t.pnl_usd, true), `key ${pnlClass(t.pnl_usd)}`],
        ["cost_usd", "Cost", fmtUsd(t.cost_usd)],
        ["fees_usd", "Fees", fmtUsd(t.fees_usd)],
        ["payout_usd", "Payout", fmtUsd(t.payout_usd)],
        ["exposure_usd", "Exposure", fmtUsd(t.exposure_usd)],
      ]),
      fieldGroup("Ids", [
        ["opportunity_key", "Opportunity", t.opportunity_key, "mono"],
        ["trade_id", "Trade", t.trade_id, "mono"],
        ["run_id", "Run", t.run_id, "mono"],
        ["intent_id", "Intent", t.intent_id, "mono"],
      ])
    );

    $("trade-legs").tBodies[0].replaceChildren(
      ...(t.legs || []).map((leg, i) => {
        const tr = el("tr", { "data-testid": "leg-row", "data-leg": i });
        tr.append(
          cell("leg-venue", leg.venue),
          cell("leg-instrument", leg.instrument, "mono"),
          cell("leg-outcome", leg.outcome),
          cell("leg-side", leg.side),
          cell("leg-requested", leg.requested_size, "num"),
          cell("leg-matched", leg.matched_size, "num"),
          cell("leg-fill", fmtPct(leg.fill_pct), "num"),
          cell("leg-avg-price", fmtNum(leg.avg_price), "num"),
          cell("leg-worst-price", fmtNum(leg.worst_price), "num"),
          cell("leg-cost", fmtUsd(leg.cost_usd), "num"),
          cell("leg-fee", fmtUsd(leg.fee_usd), "num")
        );
        return tr;
      })
    );

    const d = data.decision;
    if (d) {
      const outcome = decisionOutcome(d);
      setText(
        "trade-decision-summary",
        `${d.decision_source}: ${outcome} (${d.reason}), net edge ${fmtNum(d.net_edge_cents, 4)}¢, ` +
          `size ${d.size}, decided ${fmtTime(d.decided_at)}`
      );
      $("trade-checks").tBodies[0].replaceChildren(
        ...(d.checks || []).map((c) => {
          const tr = el("tr", {
            "data-testid": "check-row",
            "data-check": c.name,
            "data-passed": c.passed ? "true" : "false",
            class: c.passed ? "pass" : "fail",
          });
          tr.append(
            cell("check-name", c.name),
            cell("check-result", c.passed ? "passed" : "failed"),
            cell("check-detail", c.detail || "")
          );
          return tr;
        })
      );
    } else {
      setText("trade-decision-summary", "no decision recorded");
    }

    $("trade-balance").tBodies[0].replaceChildren(
      ...(data.balance_changes || []).map((b) => {
        const tr = el("tr", { "data-testid": "balance-row", "data-kind": b.kind });
        tr.append(
          cell("balance-at", fmtTime(b.at ?? b.ts_iso ?? (typeof b.ts === "string" ? b.ts : ""))),
          cell("balance-kind", b.kind),
          cell("balance-amount", fmtUsd(usdOf(b, "amount")), "num"),
          cell("balance-balance", fmtUsd(usdOf(b, "balance")), "num"),
          cell("balance-pnl", fmtUsd(usdOf(b, "pnl"), true), "num")
        );
        return tr;
      })
    );
  }

  function usdOf(obj, name) {
    // a balance change as USD (`<name>_usd`) or micro-dollars (`<name>_micros`)
    if (obj[`${name}_usd`] !== undefined) return obj[`${name}_usd`];
    if (obj[`${name}_micros`] !== undefined) return Number(obj[`${name}_micros`]) / 1e6;
    return null;
  }

  function closeModal() {
    state.openTradeId = null;
    const modal = $("trade-modal");
    if (modal.open) modal.close();
  }

  // -- live events ---------------------------------------------------------------------------------

  function setWs(stateName, text) {
    const node = $("ws-status");
    node.dataset.state = stateName;
    node.dataset.events = String(state.wsEvents);
    node.textContent = text || `live: ${stateName}`;
  }

  function connectWs() {
    if (!state.token || state.ws) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/simulator/ws?token=${encodeURIComponent(state.token)}`;
    let ws;
    try {
      ws = new WebSocket(url);
    } catch (e) {
      reconnectWs();
      return;
    }
    state.ws = ws;
    setWs("connecting");
    ws.addEventListener("open", () => {
      if (state.ws === ws) setWs("subscribing", "live: connecting");
    });
    ws.addEventListener("message", (m) => {
      if (state.ws === ws) onEvent(m.data);
    });
    ws.addEventListener("close", (e) => {
      if (state.ws !== ws) return; // closed on purpose (sign out)
      state.ws = null;
      if (e.code === WS_UNAUTHORIZED) {
        // the token was refused: a new one for the key in memory, else sign in again
        state.token = state.key ? state.token : null;
        state.tokenExp = 0;
        if (!state.key) {
          signOut(`Signed out: ${e.reason || "the server refused the token"}`);
          return;
        }
      }
      reconnectWs();
    });
  }

  function onHello() {
    // the server's subscription is in place: every event from now on arrives here, and one
    // refresh picks up whatever happened before (or while the socket was down)
    state.wsRetry = 0;
    setWs("open", "live: on");
    scheduleRefresh(0);
  }

  function reconnectWs() {
    if (!state.token) return;
    const base = Math.min(WS_BACKOFF_MAX_MS, WS_BACKOFF_MIN_MS * 2 ** state.wsRetry);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    state.wsRetry += 1;
    setWs("retrying", `live: reconnecting in ${Math.ceil(delay / 1000)} s`);
    clearTimeout(state.wsTimer);
    state.wsTimer = setTimeout(async () => {
      state.wsTimer = null;
      if (state.key && state.tokenExp <= Date.now() + TOKEN_MARGIN_MS) {
        try {
          await renew(); // signs out when the key is refused
        } catch (e) {
          if (state.token || state.key) reconnectWs(); // the server is still away: wait longer
          return;
        }
      }
      connectWs(); // a refused token closes with WS_UNAUTHORIZED; catching up waits for the hello
    }, delay);
  }

  function closeWs() {
    clearTimeout(state.wsTimer);
    state.wsTimer = null;
    state.wsRetry = 0;
    const ws = state.ws;
    state.ws = null;
    if (ws) ws.close(1000, "signed out");
    setWs("closed", "live: off");
  }

  function onEvent(raw) {
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch (_) {
      return;
    }
    if (!msg || typeof msg !== "object") return;
    state.wsEvents += 1;
    $("ws-status").dataset.events = String(state.wsEvents);
    if (msg.event === "simulator:hello") onHello();
    else if (msg.event === "simulator:trade" && msg.data) onTrade(msg.data);
    else if (msg.event === "simulator:run" && msg.data) onRun(msg.data);
  }

  function onTrade(t) {
    if (!state.selectedRun) state.selectedRun = t.run_id;
    if (t.run_id === state.selectedRun) {
      mergeTrade(t);
      renderTrades();
      scheduleSettleRefresh(t);
    }
    scheduleRefresh(); // status figures and the run's counters
  }

  function onRun(run) {
    mergeRun(run);
    renderRuns();
    scheduleRefresh();
  }

  // -- wiring --------------------------------------------------------------------------------------

  function init() {
    $("signin-form").addEventListener("submit", onSignIn);
    $("start-form").addEventListener("submit", onStart);
    $("signout-button").addEventListener("click", () => signOut(""));
    $("decisions-button").addEventListener("click", toggleDecisions);
    $("trade-modal-close").addEventListener("click", closeModal);
    $("trade-modal").addEventListener("close", () => {
      state.openTradeId = null;
    });
    $("trade-modal").addEventListener("click", (e) => {
      if (e.target === $("trade-modal")) closeModal(); // a click on the backdrop
    });
    renderRuns();
    renderTrades();
    if (loadToken()) {
      showApp();
      startSession();
    } else {
      $("api-key").focus();
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
