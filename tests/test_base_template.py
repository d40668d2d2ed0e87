"""templates/base.html: vendored assets only (no CDN), htmx wired with the CSRF header."""

import re

from django.contrib.auth.models import AnonymousUser
from django.contrib.staticfiles import finders
from django.template.loader import render_to_string
from django.test import RequestFactory


def render_base():
    request = RequestFactory().get("/")
    request.user = AnonymousUser()
    return render_to_string("base.html", request=request)


def test_base_uses_only_vendored_static_files():
    html = render_base()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:css|js))"', html)
    assert "/static/vendor/bootstrap.min.css" in assets
    assert "/static/vendor/htmx.min.js" in assets
    for url in assets:
        assert url.startswith("/static/"), f"{url} is not served locally"
        assert finders.find(url.removeprefix("/static/")), f"{url} is missing from static/"


def test_base_sends_the_csrf_token_with_htmx_requests():
    html = render_base()
    match = re.search(r"<body hx-headers='\{\"X-CSRFToken\": \"([A-Za-z0-9]+)\"\}'>", html)
    assert match, "body must carry the CSRF header for htmx"
    assert "GlanceSync" in html
