"""Responses under /api/ made outside the API's own handlers (unknown URL, wrong method) get its JSON error shape."""

from __future__ import annotations

import json

from django.http import HttpResponse

API_PREFIX = "/api/"
CODES = {404: ("not_found", "no such API endpoint"), 405: ("method_not_allowed", "method not allowed here")}


def api_errors(get_response):
    def middleware(request):
        response = get_response(request)
        is_json = response.get("Content-Type", "").startswith("application/json")
        if request.path.startswith(API_PREFIX) and response.status_code in CODES and not is_json:
            code, message = CODES[response.status_code]
            detail = {"allowed": sorted(response["Allow"].split(", "))} if response.has_header("Allow") else None
            body = json.dumps({"error": {"code": code, "message": message, "detail": detail}})
            replaced = HttpResponse(body, status=response.status_code, content_type="application/json")
            if response.has_header("Allow"):
                replaced["Allow"] = response["Allow"]
            return replaced
        return response

    return middleware
