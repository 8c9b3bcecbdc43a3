"""The console: the SOC in a browser, served by the suite at ``/`` beside the API, on the same data layer and
tenancy (soc_api/data/), in Vietnamese and English. Server-rendered pages (Jinja2), our own CSS and a little of our
own JavaScript; no third-party front-end code.

- ``web.py``: what every page route uses: ``render``, ``ConsoleUser``, ``console_data``, ``CsrfChecked``, the app
  level handlers (a page that needs a session redirects to the sign-in page);
- ``sessions.py``: server-side sessions (only the SHA-256 of the cookie's token is stored), absolute and idle expiry;
- ``auth.py``: passwords (argon2id), sign-in back-off and lockout, the audit records of sign-in and sign-out;
- ``i18n.py``: the messages of every ``messages_*.py`` module, merged;
- ``templates/``, ``static/``: the pages and their CSS and JavaScript.

The routes are in ``soc_api/routers/console_*.py``.
"""
