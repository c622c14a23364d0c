"""Every admin page of the app fits a 1280 px window, in a real browser, with realistic rows.

Each page is opened in headless Chromium against the live server, checked for sideways
scrolling (the page's and any table's), and for the controls a user needs (delete and enabled
checkboxes, the last list column) lying inside the window; a full-page PNG of each goes to
``test-artifacts/admin-screenshots/`` for a human to look at. See ``docs/admin.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.utils import timezone

from django_gateway import operations
from django_gateway.models import APIKey, Consumer, JWTCredential, RateLimit, Service
from django_gateway.testing.consul import ConsulDouble
from tests.browser.conftest import open_page, screenshot
from tests.conftest import make_route

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADMIN = "/admin/django_gateway"
TAGS = ("production", "gateway.enable=true")

#: What a page must not do at 1280 px, as problems in words (an empty list: the page fits):
#: scroll sideways, hold a box that scrolls sideways, or put a control or cell outside the
#: window or beyond the right edge of the content column (a table wider than its module).
LAYOUT_PROBLEMS = """
const view = document.documentElement.clientWidth;
const content = document.getElementById('content');
const edge = Math.min(view, content.getBoundingClientRect().right
                            - parseFloat(getComputedStyle(content).paddingRight));
const name = (el) => el.tagName.toLowerCase()
    + (el.id ? '#' + el.id : '')
    + (el.name ? '[name=' + el.name + ']' : '')
    + (!el.id && !el.name && el.className && typeof el.className === 'string'
       ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
const problems = [];
if (document.documentElement.scrollWidth > view) {
    problems.push('the page is ' + document.documentElement.scrollWidth + ' px wide in a '
                  + view + ' px window');
}
for (const el of content.querySelectorAll('*')) {
    if (el.tagName === 'TEXTAREA' || el.tagName === 'SELECT') continue;
    const overflow = getComputedStyle(el).overflowX;
    if ((overflow === 'auto' || overflow === 'scroll') && el.scrollWidth > el.clientWidth + 1) {
        problems.push(name(el) + ' scrolls sideways (' + el.scrollWidth + ' px in '
                      + el.clientWidth + ' px)');
    }
}
for (const el of content.querySelectorAll('input, select, textarea, button, a, th, td')) {
    if (el.type === 'hidden' || el.getClientRects().length === 0) continue;
    const box = el.getBoundingClientRect();
    if (box.right > edge + 1 || box.left < -1) {
        problems.push(name(el) + ' lies outside the content column (x ' + Math.round(box.left)
                      + ' to ' + Math.round(box.right) + ', the column ends at '
                      + Math.round(edge) + ')');
    }
}
return problems;
"""

#: Where the element is, or null when it is absent or not displayed.
BOX = """
const el = document.querySelector(arguments[0]);
if (!el || el.getClientRects().length === 0) return null;
const box = el.getBoundingClientRect();
return {left: box.left, right: box.right, view: document.documentElement.clientWidth};
"""


@dataclass(frozen=True)
class Page:
    name: str  # also the screenshot's file name
    url: str  # with {placeholders} filled from the rows
    must_show: tuple[str, ...] = ()  # CSS selectors of controls that must be inside the window
    wait_for: str = ""  # text the page shows once live data arrived (reloaded until then)


#: Every admin page of the app. Targets have no pages of their own: they are inline on services.
PAGES = [
    Page("index", "/admin/"),
    Page("app-index", f"{ADMIN}/"),
    Page(
        "service-list",
        f"{ADMIN}/service/",
        ("#result_list thead th:last-child", "#result_list input.action-select"),
    ),
    Page(
        "service-add",
        f"{ADMIN}/service/add/",
        ("input[name=targets-0-enabled]", "input[name=targets-0-weight]"),
    ),
    Page(
        "service-change-static",
        f"{ADMIN}/service/{{orders}}/change/",
        (
            "input[name=targets-0-DELETE]",
            "input[name=targets-0-enabled]",
            "input[name=routes-0-DELETE]",
            "input[name=routes-0-enabled]",
            "input[name=routes-0-priority]",
            "input[name=rate_limits-0-DELETE]",
            "input[name=rate_limits-0-enabled]",
        ),
    ),
    Page(
        "service-change-consul",
        f"{ADMIN}/service/{{payments}}/change/",
        ("input[name=routes-0-DELETE]",),
        wait_for="10.0.2.16",  # the first look starts the Consul watcher and shows nothing yet
    ),
    Page(
        "route-list",
        f"{ADMIN}/route/",
        ("#result_list thead th:last-child", "#result_list input.action-select"),
    ),
    Page("route-add", f"{ADMIN}/route/add/"),
    Page(
        "route-change",
        f"{ADMIN}/route/{{orders_api}}/change/",
        (
            "textarea[name=paths]",
            "input[name=rate_limits-0-DELETE]",
            "input[name=rate_limits-0-enabled]",
            "[name=rate_limits-0-consumer]",
            "[name=rate_limits-2-consumer]",
        ),
    ),
    Page(
        "consumer-list",
        f"{ADMIN}/consumer/",
        ("#result_list thead th:last-child", "#result_list input.action-select"),
    ),
    Page("consumer-add", f"{ADMIN}/consumer/add/"),
    Page(
        "consumer-change",
        f"{ADMIN}/consumer/{{acme}}/change/",
        (
            "#api_keys-group tbody tr:first-child td:last-child",
            "input[name=jwt_credentials-0-DELETE]",
            "input[name=rate_limits-0-DELETE]",
            "input[name=rate_limits-0-enabled]",
        ),
    ),
    Page(
        "apikey-list",
        f"{ADMIN}/apikey/",
        ("#result_list thead th:last-child", "#result_list input.action-select"),
    ),
    Page("apikey-change", f"{ADMIN}/apikey/{{key}}/change/"),
    Page(
        "ratelimit-list",
        f"{ADMIN}/ratelimit/",
        ("#result_list thead th:last-child", "#result_list input.action-select"),
    ),
    Page("ratelimit-add", f"{ADMIN}/ratelimit/add/"),
    Page("ratelimit-change", f"{ADMIN}/ratelimit/{{consumer_limit}}/change/"),
]


@pytest.fixture
def consul(settings: Any) -> Any:
    """A Consul double with two passing instances of ``payments-api``; the gateway asks it."""
    with ConsulDouble() as double:
        for number in (1, 2):
            double.catalog.register(
                "payments-api",
                f"payments-{number}",
                address=f"10.0.2.{14 + number}",
                port=8443,
                tags=TAGS,
            )
        settings.GATEWAY = {**django_settings.GATEWAY, "CONSUL_ADDRESS": double.address}
        yield double


@pytest.fixture
def rows(consul: Any) -> dict[str, int]:
    """What a small production gateway holds: a static service with several routes, a Consul
    service, a route with rate limits (one of them a consumer's plan), consumers with keys."""
    orders = Service.objects.create(name="orders", path="/internal/orders", retries=3)
    for host in ("10.0.1.11", "10.0.1.12", "orders-3.backend.svc.cluster.local"):
        orders.targets.create(host=host, port=8080)
    payments = Service.objects.create(
        name="payments",
        protocol="https",
        discovery="consul",
        consul_service="payments-api",
        consul_tags=list(TAGS),
        load_balancing="consistent_hash",
        hash_on="header",
        hash_on_header="X-Tenant-ID",
    )
    acme = Consumer.objects.create(
        username="acme-corporation",
        custom_id="cust-000042",
        groups=["partners", "beta-testers", "billing"],
    )
    Consumer.objects.create(username="mobile-app-ios", custom_id="app-ios")
    orders_api = make_route(
        orders,
        "orders-api",
        paths=["/api/v1/orders", "/api/v2/orders", r"~/api/v\d+/orders/legacy"],
        hosts=["api.example.com", "api.example.org", "*.partners.example.com"],
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        headers={"x-api-version": ["2", "3"]},
        priority=10,
        authentication="any",
        allowed_groups=["partners", "staff"],
        allowed_ips=["10.0.0.0/8", "2001:db8::/32"],
    )
    make_route(orders, "orders-admin", paths=["/admin-api/orders"], methods=["GET", "DELETE"])
    make_route(orders, "orders-webhooks", paths=["/hooks/orders"], hosts=["hooks.example.com"])
    make_route(orders, "orders-public-catalogue", paths=["/catalogue"], enabled=False)
    make_route(payments, "payments-api", paths=["/api/v1/payments", "/api/v1/refunds"])
    RateLimit.objects.create(route=orders_api, limit=100, period="second", limit_by="ip")
    RateLimit.objects.create(
        route=orders_api, limit=5000, period="hour", limit_by="header", header_name="X-Tenant-ID"
    )
    consumer_limit = RateLimit.objects.create(
        route=orders_api, consumer=acme, limit=20000, period="hour", limit_by="credential"
    )
    RateLimit.objects.create(service=orders, limit=1000, period="minute", limit_by="consumer")
    RateLimit.objects.create(limit=100000, period="day", limit_by="consumer", fault_tolerant=False)
    key, _ = operations.issue_key(acme, name="production server eu-west-1")
    operations.issue_key(acme, name="staging", expires_at=timezone.now() + timedelta(days=30))
    revoked, _ = operations.issue_key(acme, name="laptop of a former contractor")
    operations.revoke_keys(APIKey.objects.filter(pk=revoked.pk))
    JWTCredential.objects.create(
        consumer=acme, key="acme-issuer", algorithm="RS256", jwks_url="https://id.acme.example/jwks"
    )
    return {
        "orders": orders.pk,
        "payments": payments.pk,
        "orders_api": orders_api.pk,
        "acme": acme.pk,
        "key": key.pk,
        "consumer_limit": consumer_limit.pk,
    }


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_admin_page_fits_a_1280_px_window(
    admin_browser: Any, rows: dict[str, int], page: Page
) -> None:
    open_page(admin_browser, page.url.format(**rows), page.wait_for)
    shot = screenshot(admin_browser, page.name)
    problems = admin_browser.execute_script(LAYOUT_PROBLEMS)
    for selector in page.must_show:
        box = admin_browser.execute_script(BOX, selector)
        if box is None:
            problems.append(f"{selector} is not on the page")
        elif box["right"] > box["view"] + 1 or box["left"] < -1:
            problems.append(f"{selector} lies outside the window (right edge {box['right']:.0f})")
    assert not problems, f"{page.name} ({shot}):\n" + "\n".join(problems[:15])
