"""The project's own page: what a request no gateway route matched looks like."""

from django.http import HttpRequest, HttpResponse

from django_gateway.models import Route


def home(request: HttpRequest) -> HttpResponse:
    """Plain text, so it reads well in curl and in a browser alike."""
    base = f"{request.scheme}://{request.get_host()}"
    lines = [
        f"This page is served by Django itself: no gateway route matched {request.method} "
        f"{request.path}, so GatewayMiddleware handed the request on to the URLconf.",
        "",
        "Routes the gateway proxies (edit them at " + base + "/admin/):",
    ]
    for route in Route.objects.select_related("service").order_by("name"):
        where = ", ".join(route.paths or ["/"])
        if route.hosts:
            where += " on " + ", ".join(route.hosts)
        state = "" if route.enabled and route.service.enabled else "  (disabled)"
        lines.append(f"  {route.name:<14} {where:<32} -> service {route.service.name}{state}")
    lines += [
        "",
        "Try:",
        f"  curl -i {base}/echo/hello",
        f"  curl -i '{base}/v1/orders/42?expand=items'",
        f"  curl -i -H 'Host: echo.localhost' {base}/anything",
    ]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8")
