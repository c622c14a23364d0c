"""Test helpers for projects that use django-gateway.

:mod:`django_gateway.testing.upstreams` provides real HTTP/1.1 servers on loopback that stand in
for the upstream services behind the gateway, including misbehaving ones (slow, resetting,
truncating, garbage-speaking). :mod:`django_gateway.testing.consul` is a stateful Consul HTTP API
double (catalog, health, blocking queries, ACL errors) that the real client library talks to.
Nothing is imported here so that ``import django_gateway.testing``
stays free of side effects; import the submodule you need.
"""
