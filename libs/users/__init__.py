"""Users of the HTTP API: API keys, JWT access tokens, profiles and encrypted exchange secrets.

- `keys`: API keys (`mt_` + 43 url-safe characters, 256 random bits), stored only as a SHA-256
  hex digest plus a short display prefix; user ids.
- `tokens`: short-lived HS256 JWTs (PyJWT) issued for a key at `POST /auth/token`.
- `secretbox`: the three server secrets (Fernet key, JWT key, admin token), each from its
  `MT_*` variable or generated once into a 0600 file in MT_HOME, and `SecretBox` (Fernet).
- `store`: the `users`, `user_profiles` and `user_secrets` tables (ReplacingMergeTree, read
  with FINAL): create / list / rotate / disable users, profiles with MT_PAPER_* defaults.
- `secrets`: validation of the exchange-secrets bodies, and `load_secrets` (decrypted, for the
  paper service's live validation) / `venues_with_keys`.

The HTTP side is `services/report/routes_users.py` and `services/report/auth.py`; the
command line is `markettwin users ...` (`services/cli_users.py`).
"""
