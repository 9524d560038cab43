"""The agent-based market's kernel: one trading day in one numba call.

Agents are vectorised populations (arrays of state, one row per agent), never Python
objects. Each population wakes as a Poisson process whose rate follows the market's activity
(the calibrated intraday profile times a slowly varying stochastic factor); the acting agent
is drawn uniformly. Orders reach the exchange after the population's latency (base + an
exponential jitter) through a time-ordered heap; limit orders carry a lifetime after which
their owner cancels them. The populations:

- noise (zero intelligence): limit orders around the touch and market orders, sizes and
  placements drawn from the calibrated distributions;
- value: observe a mean-reverting fundamental with noise, take liquidity when the book is
  mispriced beyond a threshold, otherwise join the touch on their side;
- market makers: quote a ladder around their fundamental estimate shifted by the price
  impact they infer from aggressive order flow (linear in signed volume, decaying), skewed
  by inventory, requoting when their reference moves or a quote is gone;
- momentum: trade with the last minute's move when it is large;
- mean reversion: trade against large departures from a slow moving average;
- scenario and algo flow (precomputed schedules) on top.

Draws come from per-population counter-based streams (`libs.sim.rng`), each event taking a
fixed number of draws, so adding an algorithm leaves every other agent's randomness intact.
Times are float seconds after local midnight; prices integer $0.0001.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from libs.lob import core
from libs.lob.core import BUY, NEED_GROW, SELL
from libs.sim.rng import draw, exponential, normal, quantile

# populations (also owner codes: owner = pop * OWNER_BASE + agent index)
NOISE, VALUE, MM, MOMENTUM, MEANREV, SCENARIO, ALGO, SEED = 1, 2, 3, 4, 5, 6, 7, 8
POPULATIONS = {
    NOISE: "noise",
    VALUE: "value",
    MM: "market_maker",
    MOMENTUM: "momentum",
    MEANREV: "mean_reversion",
    SCENARIO: "scenario",
    ALGO: "algo",
    SEED: "opening_book",
}
OWNER_BASE = 1_000_000

# random streams: one for each population's clock, one for its decisions
S_CLOCK = 0
S_DECIDE = 16
N_STREAMS = 32

# parameter vector P (float64), filled by libs.sim.params
(
    P_TICK,
    P_N_NOISE,
    P_N_VALUE,
    P_N_MM,
    P_N_MOM,
    P_N_MEANREV,
    P_RATE_NOISE_LIMIT,
    P_RATE_NOISE_MKT,
    P_RATE_VALUE,
    P_RATE_MOM,
    P_RATE_MEANREV,
    P_MM_PERIOD,
    P_MM_HALF_SPREAD,
    P_MM_LEVELS,
    P_MM_STEP,
    P_MM_SIZE,
    P_MM_SKEW,
    P_MM_MAX_INV,
    P_MM_OBS_NOISE,
    P_VALUE_OBS_NOISE,
    P_VALUE_THRESHOLD,
    P_VALUE_MAX_POS,
    P_MOM_THRESHOLD,
    P_MEANREV_THRESHOLD,
    P_MEANREV_HALFLIFE,
    P_LIFETIME,
    P_DEEP_MEAN,
    P_DEEP_PROB,
    P_SIZE_CAP,
    P_LAT_NOISE,
    P_LAT_VALUE,
    P_LAT_MM,
    P_LAT_MOM,
    P_LAT_EXT,
    P_LAT_JITTER,
    P_ALGO_COLLAR,
    P_SCEN_SIDE,
    P_SCEN_LEVELS,
    P_MINUTE_VOL,
    P_MM_REQUOTE,
    P_IMPACT_LAMBDA,
    P_IMPACT_HALFLIFE,
    P_VALUE_IMPACT_SHARE,
    P_COUNT,
) = range(44)

# heap payload kinds
H_ORDER = 0
H_CANCEL = 1

# pending-order record fields
Q_KIND, Q_SIDE, Q_PRICE, Q_QTY, Q_OWNER, Q_OID, Q_LIFE_MS = range(7)

# output trade fields
TR_TS, TR_PRICE, TR_QTY, TR_SIDE, TR_MAKER_POP, TR_TAKER_POP = range(6)

# counters returned
(
    C_LIMIT,
    C_MARKET,
    C_CANCEL,
    C_DROPPED,
    C_EVENTS,
    C_ALGO_SENT,
    C_SCEN_QTY,
    C_ALGO_CHILDREN,
    C_LIMIT_TOUCH,
    C_CANCEL_TOUCH,
) = range(10)
N_COUNTERS = 10


@njit(cache=True, nogil=True, inline="always")
def _heap_push(ht: np.ndarray, hv: np.ndarray, n: int, t: float, v: int) -> int:
    i = n
    ht[i] = t
    hv[i] = v
    while i > 0:
        p = (i - 1) >> 1
        if ht[p] <= ht[i]:
            break
        ht[p], ht[i] = ht[i], ht[p]
        hv[p], hv[i] = hv[i], hv[p]
        i = p
    return n + 1


@njit(cache=True, nogil=True, inline="always")
def _heap_pop(ht: np.ndarray, hv: np.ndarray, n: int) -> int:
    n -= 1
    ht[0] = ht[n]
    hv[0] = hv[n]
    i = 0
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        if c + 1 < n and ht[c + 1] < ht[c]:
            c += 1
        if ht[i] <= ht[c]:
            break
        ht[c], ht[i] = ht[i], ht[c]
        hv[c], hv[i] = hv[i], hv[c]
        i = c
    return n


@njit(cache=True, nogil=True)
def _grow_rows(a: np.ndarray) -> np.ndarray:
    out = np.zeros((a.shape[0] * 2,) + a.shape[1:], a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True)
def _grow_1d(a: np.ndarray) -> np.ndarray:
    out = np.zeros(a.shape[0] * 2, a.dtype)
    out[: a.shape[0]] = a
    return out


@njit(cache=True, nogil=True, inline="always")
def _in_session(windows: np.ndarray, t: float) -> bool:
    for w in range(windows.shape[0]):
        if windows[w, 0] <= t < windows[w, 1]:
            return True
    return False


@njit(cache=True, nogil=True, inline="always")
def _at(series: np.ndarray, t0: float, t: float) -> float:
    """Value of a 1-second series starting at t0, at time t (clamped)."""
    k = int(t - t0)
    if k < 0:
        k = 0
    if k >= series.shape[0]:
        k = series.shape[0] - 1
    return series[k]


@njit(cache=True, nogil=True)
def run_day(
    book: core.Book,
    P: np.ndarray,
    seed: np.uint64,
    windows: np.ndarray,
    fundamental: np.ndarray,
    activity: np.ndarray,
    offset_q: np.ndarray,
    order_size_q: np.ndarray,
    trade_size_q: np.ndarray,
    open_mid: int,
    scen_t: np.ndarray,
    scen_frac: np.ndarray,
    algo_t: np.ndarray,
    algo_qty: np.ndarray,
    algo_side: int,
):
    """Simulate the day from the first window's open to the last window's close on `book`
    (empty, from `core.new_book`).

    `fundamental` and `activity` are 1-second series from the open. Returns
    (trades[n, 6], l1[n_sec, 4] sampled at the end of every second, counters,
    mm_inventory, value_positions)."""
    tick = int(P[P_TICK])
    t_open = windows[0, 0]
    t_close = windows[windows.shape[0] - 1, 1]
    n_sec = int(t_close - t_open)
    counters = np.zeros(N_STREAMS, np.int64)
    stats = np.zeros(N_COUNTERS, np.int64)

    trades = np.zeros((1 << 15, 6), np.int64)
    n_tr = 0
    l1 = np.zeros((n_sec, 4), np.int64)
    next_l1 = 0

    n_value = int(P[P_N_VALUE])
    n_mm = int(P[P_N_MM])
    value_pos = np.zeros(max(n_value, 1), np.int64)
    mm_inv = np.zeros(max(n_mm, 1), np.int64)
    levels = int(P[P_MM_LEVELS])
    mm_oid = np.zeros((max(n_mm, 1), 2 * levels), np.int64)
    mm_px = np.zeros((max(n_mm, 1), 2 * levels), np.int64)
    mm_next = np.zeros(max(n_mm, 1), np.float64)
    mm_ref = np.zeros(max(n_mm, 1), np.float64)
    for m in range(n_mm):
        mm_next[m] = t_open + P[P_MM_PERIOD] * (m + 1) / (n_mm + 1)

    # heap of (time, payload); payload >= 0 is a pending order record, < 0 a cancel of id -payload
    cap = 1 << 14
    ht = np.zeros(cap, np.float64)
    hv = np.zeros(cap, np.int64)
    hn = 0
    pend = np.zeros((cap, 7), np.int64)
    free = np.arange(cap - 1, -1, -1).astype(np.int64)
    n_free = cap
    next_oid = 1

    # opening book: the calibrated touch depth on a few levels around the open mid
    half = max(1, int(P[P_MM_HALF_SPREAD]))
    for k in range(10):
        q = int(P[P_MM_SIZE] * (1.0 + 0.3 * k))
        core.limit_order(book, 0, next_oid, BUY, open_mid - (half + k) * tick, q, SEED * OWNER_BASE, False)
        next_oid += 1
        core.limit_order(book, 0, next_oid, SELL, open_mid + (half + k) * tick, q, SEED * OWNER_BASE, False)
        next_oid += 1

    # population clocks
    pops = np.array([NOISE, VALUE, MOMENTUM, MEANREV], np.int64)
    n_agents = np.array([P[P_N_NOISE], P[P_N_VALUE], P[P_N_MOM], P[P_N_MEANREV]])
    base_rate = np.array(
        [P[P_RATE_NOISE_LIMIT] + P[P_RATE_NOISE_MKT], P[P_RATE_VALUE], P[P_RATE_MOM], P[P_RATE_MEANREV]]
    )
    next_wake = np.full(4, np.inf)
    for i in range(4):
        if n_agents[i] > 0 and base_rate[i] > 0:
            next_wake[i] = t_open + exponential(draw(seed, counters, S_CLOCK + pops[i])) / (
                base_rate[i] * _at(activity, t_open, t_open)
            )
    lat = np.array([P[P_LAT_NOISE], P[P_LAT_VALUE], P[P_LAT_MOM], P[P_LAT_MOM]])
    p_mkt = P[P_RATE_NOISE_MKT] / max(P[P_RATE_NOISE_LIMIT] + P[P_RATE_NOISE_MKT], 1e-12)

    i_scen = 0
    scen_liq = -1.0
    i_algo = 0
    algo_carry = 0
    ewma = float(open_mid)
    ewma_t = t_open
    impact = 0.0  # price shift market makers infer from aggressive order flow
    lam = P[P_IMPACT_LAMBDA]
    impact_hl = P[P_IMPACT_HALFLIFE]
    alpha_hl = P[P_MEANREV_HALFLIFE]

    send = np.zeros((2 * levels + 2, 8), np.float64)  # kind, side, price, qty, owner, life_ms, latency, jitter u
    mm_jit = np.zeros(2 * levels, np.float64)
    t = t_open
    while True:
        # the next event: the earliest of every clock
        t_next = np.inf
        which = -1
        for i in range(4):
            if next_wake[i] < t_next:
                t_next = next_wake[i]
                which = i
        for m in range(n_mm):
            if mm_next[m] < t_next:
                t_next = mm_next[m]
                which = 10 + m
        if hn > 0 and ht[0] < t_next:
            t_next = ht[0]
            which = 100
        if i_scen < scen_t.shape[0] and scen_t[i_scen] < t_next:
            t_next = scen_t[i_scen]
            which = 200
        if i_algo < algo_t.shape[0] and algo_t[i_algo] < t_next:
            t_next = algo_t[i_algo]
            which = 300
        # L1 samples at the end of every second up to the event
        while next_l1 < n_sec and t_open + next_l1 + 1 <= t_next:
            l1[next_l1, 0] = core.best_bid(book)
            l1[next_l1, 1] = core.best_bid_size(book)
            l1[next_l1, 2] = core.best_ask(book)
            l1[next_l1, 3] = core.best_ask_size(book)
            next_l1 += 1
        if t_next >= t_close or which < 0:
            break
        t = t_next
        ts = int(t * 1e9)
        stats[C_EVENTS] += 1
        bb = core.best_bid(book)
        ba = core.best_ask(book)
        f_now = _at(fundamental, t_open, t)
        if bb > 0 and ba > 0:
            mid = 0.5 * (bb + ba)
        else:
            mid = f_now
        # a slow moving average for the mean-reversion funds
        dt_e = t - ewma_t
        if dt_e > 0:
            impact *= math.exp(-dt_e * 0.6931471805599453 / impact_hl)
            w = math.exp(-dt_e * 0.6931471805599453 / alpha_hl)
            ewma = w * ewma + (1.0 - w) * mid
            ewma_t = t
        open_now = _in_session(windows, t)
        act = _at(activity, t_open, t)

        # orders to send: (kind, side, price, qty, owner, life_ms, latency)
        n_send = 0
        send[:, 0] = 0.0
        send[:, 5] = 0.0

        if which < 4:
            pop = pops[which]
            stream = S_DECIDE + pop
            n_ag = int(n_agents[which])
            u0 = draw(seed, counters, stream)
            u1 = draw(seed, counters, stream)
            u2 = draw(seed, counters, stream)
            u3 = draw(seed, counters, stream)
            u4 = draw(seed, counters, stream)
            u5 = draw(seed, counters, stream)
            u6 = draw(seed, counters, stream)
            u_jit = draw(seed, counters, stream)
            send[0, 7] = u_jit
            agent = min(int(u0 * n_ag), n_ag - 1)
            owner = pop * OWNER_BASE + agent
            next_wake[which] = t + exponential(draw(seed, counters, S_CLOCK + pop)) / (base_rate[which] * act)
            if open_now:
                if pop == NOISE:
                    side = BUY if u1 < 0.5 else SELL
                    if u2 < p_mkt:
                        qty = int(quantile(trade_size_q, u3) + 0.5)
                        send[n_send, 0] = core.OP_MARKET
                        send[n_send, 1] = side
                        send[n_send, 3] = max(qty, 1)
                    else:
                        qty = int(min(quantile(order_size_q, u3), P[P_SIZE_CAP]) + 0.5)
                        if u5 < P[P_DEEP_PROB]:
                            off = 1.0 + exponential(u4) * P[P_DEEP_MEAN]
                        else:
                            off = quantile(offset_q, u4)
                        ref_px = bb if side == BUY else ba
                        if ref_px <= 0:
                            ref_px = int(mid)
                        px = int(ref_px - side * int(round(off)) * tick)
                        # stay passive: never cross the other side
                        if side == BUY and ba > 0 and px >= ba:
                            px = ba - tick
                        if side == SELL and bb > 0 and px <= bb:
                            px = bb + tick
                        px = (px // tick) * tick
                        if px > 0:
                            send[n_send, 0] = core.OP_LIMIT
                            send[n_send, 1] = side
                            send[n_send, 2] = px
                            send[n_send, 3] = max(qty, 1)
                            send[n_send, 5] = 1000.0 * P[P_LIFETIME] * (1.0 + max(off, 0.0)) * exponential(u6)
                    send[n_send, 4] = owner
                    send[n_send, 6] = lat[0]
                    if send[n_send, 0] != 0:
                        n_send += 1
                elif pop == VALUE:
                    est = f_now + P[P_VALUE_IMPACT_SHARE] * impact + P[P_VALUE_OBS_NOISE] * normal(u1, u2)
                    qty = int(quantile(trade_size_q, u3) + 0.5)
                    qty = max(qty, 1)
                    pos = value_pos[agent]
                    thr = P[P_VALUE_THRESHOLD]
                    maxp = P[P_VALUE_MAX_POS]
                    if ba > 0 and est > ba + thr and pos + qty <= maxp:
                        send[n_send, 0] = core.OP_MARKET
                        send[n_send, 1] = BUY
                        send[n_send, 3] = qty
                    elif bb > 0 and est < bb - thr and pos - qty >= -maxp:
                        send[n_send, 0] = core.OP_MARKET
                        send[n_send, 1] = SELL
                        send[n_send, 3] = qty
                    elif bb > 0 and ba > 0:
                        side = BUY if est > mid else SELL
                        if side * pos + qty <= maxp:
                            send[n_send, 0] = core.OP_LIMIT
                            send[n_send, 1] = side
                            send[n_send, 2] = bb if side == BUY else ba
                            send[n_send, 3] = qty
                            send[n_send, 5] = 1000.0 * P[P_LIFETIME] * 4.0 * exponential(u4)
                    if send[n_send, 0] != 0:
                        send[n_send, 4] = owner
                        send[n_send, 6] = lat[1]
                        n_send += 1
                elif pop == MOMENTUM or pop == MEANREV:
                    k_now = int(t - t_open)
                    if pop == MOMENTUM:
                        # a one-sided book (now or a minute ago) has no mid to compare
                        signal = 0.0
                        thr = P[P_MOM_THRESHOLD]
                        j0 = next_l1 - 60
                        if k_now >= 60 and j0 >= 0 and l1[j0, 0] > 0 and l1[j0, 2] > 0 and bb > 0 and ba > 0:
                            old = 0.5 * (l1[j0, 0] + l1[j0, 2])
                            signal = (mid - old) / (P[P_MINUTE_VOL] * mid)
                    else:
                        signal = -(mid - ewma) / (P[P_MINUTE_VOL] * mid)
                        thr = P[P_MEANREV_THRESHOLD]
                    if signal > thr or signal < -thr:
                        qty = int(quantile(trade_size_q, u3) + 0.5)
                        send[n_send, 0] = core.OP_MARKET
                        send[n_send, 1] = BUY if signal > 0 else SELL
                        send[n_send, 3] = max(qty, 1)
                        send[n_send, 4] = owner
                        send[n_send, 6] = lat[2]
                        n_send += 1
        elif which < 100:
            m = which - 10
            stream = S_DECIDE + MM
            u1 = draw(seed, counters, stream)
            u2 = draw(seed, counters, stream)
            u3 = draw(seed, counters, stream)
            for jj in range(2 * levels):
                mm_jit[jj] = draw(seed, counters, stream)
            mm_next[m] = t + P[P_MM_PERIOD] * (0.5 + u3)
            if open_now:
                ref = f_now + impact + P[P_MM_OBS_NOISE] * normal(u1, u2) - P[P_MM_SKEW] * mm_inv[m] * tick
                if abs(ref - mm_ref[m]) < P[P_MM_REQUOTE] * tick:
                    ref = mm_ref[m]
                else:
                    mm_ref[m] = ref
                owner = MM * OWNER_BASE + m
                for j in range(2 * levels):
                    side = BUY if j < levels else SELL
                    lvl = j % levels
                    dist = (P[P_MM_HALF_SPREAD] + lvl * P[P_MM_STEP]) * tick
                    if side == BUY:
                        px = int(math.floor((ref - dist) / tick)) * tick
                        allowed = mm_inv[m] < P[P_MM_MAX_INV]
                    else:
                        px = int(math.ceil((ref + dist) / tick)) * tick
                        allowed = mm_inv[m] > -P[P_MM_MAX_INV]
                    old = mm_oid[m, j]
                    resting = old > 0 and core.order_qty(book, old) > 0
                    if resting and mm_px[m, j] == px and allowed:
                        continue
                    if resting:
                        if hn + 1 >= ht.shape[0]:
                            ht = _grow_1d(ht)
                            hv = _grow_1d(hv)
                        hn = _heap_push(ht, hv, hn, t + P[P_LAT_MM], -old)
                    mm_oid[m, j] = 0
                    if allowed and px > 0:
                        send[n_send, 0] = core.OP_LIMIT
                        send[n_send, 1] = side
                        send[n_send, 2] = px
                        send[n_send, 3] = int(P[P_MM_SIZE] * (1.0 + 0.5 * lvl))
                        send[n_send, 4] = owner
                        send[n_send, 5] = 0.0
                        send[n_send, 6] = P[P_LAT_MM]
                        send[n_send, 7] = mm_jit[j]
                        mm_px[m, j] = px
                        # remember which quote slot this order fills (set when sent below)
                        mm_oid[m, j] = -(n_send + 1)
                        n_send += 1
        elif which == 100:
            # an order or a cancel reaches the exchange
            v = hv[0]
            hn = _heap_pop(ht, hv, hn)
            if v < 0:
                s_ = core.find_order(book, -v)
                if s_ >= 0:
                    o_px = book.orders[s_, core.O_PRICE]
                    if o_px == bb or o_px == ba:
                        stats[C_CANCEL_TOUCH] += 1
                r = core.cancel(book, -v, 0)
                if r > 0:
                    stats[C_CANCEL] += 1
            else:
                kind = pend[v, Q_KIND]
                side = pend[v, Q_SIDE]
                oid = pend[v, Q_OID]
                if not open_now:
                    stats[C_DROPPED] += 1
                    if pend[v, Q_OWNER] == ALGO * OWNER_BASE:
                        algo_carry += pend[v, Q_QTY]
                else:
                    n0 = book.meta[core.M_TRADES]
                    r = NEED_GROW
                    while r == NEED_GROW:
                        if kind == core.OP_MARKET:
                            r = core.market_order(book, ts, oid, side, pend[v, Q_QTY], pend[v, Q_OWNER])
                        else:
                            r = core.limit_order(
                                book,
                                ts,
                                oid,
                                side,
                                pend[v, Q_PRICE],
                                pend[v, Q_QTY],
                                pend[v, Q_OWNER],
                                kind == core.OP_IOC,
                            )
                        if r == NEED_GROW:
                            book = core.grow(book)
                    if pend[v, Q_OWNER] == ALGO * OWNER_BASE:
                        algo_carry += pend[v, Q_QTY] - max(r, 0)
                    if kind == core.OP_MARKET:
                        stats[C_MARKET] += 1
                    else:
                        stats[C_LIMIT] += 1
                        lp = pend[v, Q_PRICE]
                        if (side == BUY and (bb == 0 or lp >= bb)) or (side == SELL and (ba == 0 or lp <= ba)):
                            stats[C_LIMIT_TOUCH] += 1
                    if kind == core.OP_LIMIT and pend[v, Q_LIFE_MS] > 0 and core.order_qty(book, oid) > 0:
                        if hn + 1 >= ht.shape[0]:
                            ht = _grow_1d(ht)
                            hv = _grow_1d(hv)
                        hn = _heap_push(ht, hv, hn, t + pend[v, Q_LIFE_MS] / 1000.0, -oid)
                    # positions from the new trades
                    n1 = book.meta[core.M_TRADES]
                    for k in range(n0, n1):
                        tq = book.trades[k, core.T_QTY]
                        sgn = book.trades[k, core.T_SIDE]
                        impact += lam * sgn * tq
                        for who in range(2):
                            own = book.trades[k, core.T_MAKER_OWNER] if who == 0 else book.trades[k, core.T_TAKER_OWNER]
                            s_ = -sgn if who == 0 else sgn
                            p_ = own // OWNER_BASE
                            a_ = own % OWNER_BASE
                            if p_ == VALUE:
                                value_pos[a_] += s_ * tq
                            elif p_ == MM:
                                mm_inv[a_] += s_ * tq
                free[n_free] = v
                n_free += 1
        elif which == 200:
            # scenario child: a fraction of the liquidity resting on the hit side at its start
            side = int(P[P_SCEN_SIDE])
            if scen_liq < 0:
                scen_liq = float(core.side_volume(book, -side, int(P[P_SCEN_LEVELS])))
            qty = int(scen_frac[i_scen] * scen_liq + 0.5)
            i_scen += 1
            if qty > 0:
                stats[C_SCEN_QTY] += qty
                send[n_send, 0] = core.OP_MARKET
                send[n_send, 1] = side
                send[n_send, 3] = qty
                send[n_send, 4] = SCENARIO * OWNER_BASE
                send[n_send, 6] = P[P_LAT_EXT]
                send[n_send, 7] = draw(seed, counters, S_DECIDE + SCENARIO)
                n_send += 1
        elif which == 300:
            # algo child: an IOC within a collar of the touch; what it misses carries over
            qty = int(algo_qty[i_algo]) + algo_carry
            stats[C_ALGO_SENT] += int(algo_qty[i_algo])
            stats[C_ALGO_CHILDREN] += 1
            i_algo += 1
            algo_carry = 0
            if qty > 0:
                ref_px = ba if algo_side == BUY else bb
                if ref_px <= 0:
                    ref_px = int(mid)
                px = int(ref_px * (1.0 + algo_side * P[P_ALGO_COLLAR] * 1e-4))
                px = (px // tick) * tick if algo_side == BUY else ((px + tick - 1) // tick) * tick
                send[n_send, 0] = core.OP_IOC
                send[n_send, 1] = algo_side
                send[n_send, 2] = max(px, tick)
                send[n_send, 3] = qty
                send[n_send, 4] = ALGO * OWNER_BASE
                send[n_send, 6] = P[P_LAT_EXT]
                send[n_send, 7] = draw(seed, counters, S_DECIDE + ALGO)
                n_send += 1

        # send: every order travels through the heap with its latency
        for j in range(n_send):
            if n_free == 0:
                old_cap = pend.shape[0]
                pend = _grow_rows(pend)
                free = np.zeros(pend.shape[0], np.int64)
                for k in range(old_cap, pend.shape[0]):
                    free[n_free] = k
                    n_free += 1
            if hn + 1 >= ht.shape[0]:
                ht = _grow_1d(ht)
                hv = _grow_1d(hv)
            n_free -= 1
            v = free[n_free]
            pend[v, Q_KIND] = int(send[j, 0])
            pend[v, Q_SIDE] = int(send[j, 1])
            pend[v, Q_PRICE] = int(send[j, 2])
            pend[v, Q_QTY] = int(send[j, 3])
            pend[v, Q_OWNER] = int(send[j, 4])
            pend[v, Q_OID] = next_oid
            pend[v, Q_LIFE_MS] = int(send[j, 5])
            if which >= 10 and which < 100:
                m = which - 10
                for jj in range(2 * levels):
                    if mm_oid[m, jj] == -(j + 1):
                        mm_oid[m, jj] = next_oid
            next_oid += 1
            jitter = P[P_LAT_JITTER] * exponential(send[j, 7])
            hn = _heap_push(ht, hv, hn, t + send[j, 6] + jitter, v)

        # drain the book's trades into the day's record
        nb = book.meta[core.M_TRADES]
        if nb > 0:
            while n_tr + nb > trades.shape[0]:
                trades = _grow_rows(trades)
            for k in range(nb):
                trades[n_tr, TR_TS] = book.trades[k, core.T_TS]
                trades[n_tr, TR_PRICE] = book.trades[k, core.T_PRICE]
                trades[n_tr, TR_QTY] = book.trades[k, core.T_QTY]
                trades[n_tr, TR_SIDE] = book.trades[k, core.T_SIDE]
                trades[n_tr, TR_MAKER_POP] = book.trades[k, core.T_MAKER_OWNER] // OWNER_BASE
                trades[n_tr, TR_TAKER_POP] = book.trades[k, core.T_TAKER_OWNER] // OWNER_BASE
                n_tr += 1
            book.meta[core.M_TRADES] = 0
    return trades[:n_tr].copy(), l1, stats, mm_inv, value_pos
