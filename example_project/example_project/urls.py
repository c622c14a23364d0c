"""The project's own URLs. Proxied paths (/echo, /v1/orders, ...) never get here: the gateway
answers them in its middleware. Everything else falls through to these views as usual."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", views.home, name="home"),
]
