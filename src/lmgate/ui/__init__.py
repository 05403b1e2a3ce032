"""The dashboard: pages at ``/ui`` and the JSON query API behind them at ``/ui/api/…``.

Served by the proxy (``lmgate serve``, on the ``store`` logger's store) and by ``lmgate ui``
(a local store, for library users). Each part has one job: ``query`` turns request parameters
into store queries and their answers (and CSV), ``session`` signs the login cookie, ``pages``
renders the HTML, ``routes`` puts them behind a login, ``app`` is ``lmgate ui``'s own app.
The chart library (uPlot, MIT) ships in ``static/``: no CDN, works offline. Docs: docs/ui.md.
"""
