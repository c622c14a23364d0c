"""The service form shows the Consul fieldset and the hashing fields only when they apply.

``django_gateway/static/django_gateway/service_form.js`` hides and shows them as the discovery,
load-balancing and hash-input choices change; a part holding an error always shows.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_gateway.models import Service
from tests.browser.conftest import open_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ADD = "/admin/django_gateway/service/add/"
OPTIONAL = ("consul_service", "consul_tags", "hash_on", "hash_on_header", "hash_on_cookie")


def shown(driver: Any) -> set[str]:
    """Which of the fields that come and go the user can see, plus ``targets``."""
    from selenium.webdriver.common.by import By  # imported here: without selenium, tests skip

    visible = {name for name in OPTIONAL if driver.find_element(By.NAME, name).is_displayed()}
    if driver.find_element(By.ID, "targets-group").is_displayed():
        visible.add("targets")
    return visible


def choose(driver: Any, field: str, value: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.NAME, field)).select_by_value(value)


def test_fields_appear_as_the_choices_change(admin_browser: Any) -> None:
    driver = admin_browser
    open_page(driver, ADD)
    assert shown(driver) == {"targets"}  # static, round robin: no Consul, no hashing

    choose(driver, "discovery", "consul")
    assert shown(driver) == {"consul_service", "consul_tags"}

    choose(driver, "load_balancing", "consistent_hash")
    assert shown(driver) == {"consul_service", "consul_tags", "hash_on"}  # on the client IP
    choose(driver, "hash_on", "header")
    assert shown(driver) == {"consul_service", "consul_tags", "hash_on", "hash_on_header"}
    choose(driver, "hash_on", "cookie")
    assert shown(driver) == {"consul_service", "consul_tags", "hash_on", "hash_on_cookie"}
    screenshot(driver, "service-add-consul-hashing")

    choose(driver, "discovery", "static")
    choose(driver, "load_balancing", "least_connections")
    assert shown(driver) == {"targets"}


def test_existing_services_open_with_what_applies(admin_browser: Any) -> None:
    static = Service.objects.create(name="orders")
    consul = Service.objects.create(
        name="users", discovery="consul", load_balancing="consistent_hash", hash_on="consumer"
    )
    open_page(admin_browser, f"/admin/django_gateway/service/{static.pk}/change/")
    assert shown(admin_browser) == {"targets"}
    open_page(admin_browser, f"/admin/django_gateway/service/{consul.pk}/change/")
    assert shown(admin_browser) == {"consul_service", "consul_tags", "hash_on"}


def test_a_field_with_an_error_is_never_hidden(admin_browser: Any) -> None:
    """A header name typed for hashing, then round robin chosen: the name is still checked, so
    the page that comes back shows its row and the error although round robin hides it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver = admin_browser
    open_page(driver, ADD)
    driver.find_element(By.NAME, "name").send_keys("orders")
    choose(driver, "load_balancing", "consistent_hash")
    choose(driver, "hash_on", "header")
    driver.find_element(By.NAME, "hash_on_header").send_keys("X Tenant")
    choose(driver, "load_balancing", "round_robin")
    assert "hash_on_header" not in shown(driver)
    form_page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.NAME, "_save").click()
    WebDriverWait(driver, 10).until(expected_conditions.staleness_of(form_page))
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    assert driver.find_elements(By.CSS_SELECTOR, ".errornote")  # the form came back

    row = driver.find_element(By.CSS_SELECTOR, ".form-row.field-hash_on_header")
    assert row.find_elements(By.CSS_SELECTOR, ".errorlist")
    assert shown(driver) == {"targets", "hash_on_header"}
    assert not Service.objects.exists()
