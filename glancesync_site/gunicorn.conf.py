"""gunicorn settings of the console (scripts/run and the README's production recipe):

    gunicorn -c glancesync_site/gunicorn.conf.py glancesync_site.wsgi

gthread workers: the pages are short database reads and htmx polls many of them at once, so threads share each
worker's memory and connections. Sizes come from the environment (see the README's Configuration table).
"""

import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name}={raw!r} is not an integer") from None


bind = f"{os.environ.get('GLANCESYNC_HOST', '127.0.0.1')}:{os.environ.get('GLANCESYNC_PORT', '8000')}"
worker_class = "gthread"
workers = _int("GLANCESYNC_WEB_WORKERS", 2)
threads = _int("GLANCESYNC_WEB_THREADS", 8)
timeout = _int("GLANCESYNC_WEB_TIMEOUT", 60)
# htmx polls every 2 s: an idle connection must outlive that, or it is closed just as the next poll reuses it.
keepalive = 30  # a page never takes long: a stuck one is killed
accesslog = "-" if os.environ.get("GLANCESYNC_ACCESS_LOG", "") in ("1", "true", "yes", "on") else None
# gunicorn 27's runtime control socket is one path per user: several servers (tests, or a second instance) would
# contend for it, and the console needs none of its commands.
control_socket_disable = True
forwarded_allow_ips = os.environ.get("GLANCESYNC_FORWARDED_ALLOW_IPS", "127.0.0.1")
