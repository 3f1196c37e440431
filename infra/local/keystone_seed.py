#!/usr/bin/python3
"""Health probe and seed for the local Keystone, over its REST API (standard library only).

  keystone_seed.py health URL     exit 0 if GET URL (e.g. http://127.0.0.1:15000/v3) answers 200
  keystone_seed.py seed URL       create (or find) what PIR's tests use, print one summary line
  keystone_seed.py warm URL       issue and validate one admin token (run after every start)

Seed (idempotent: each object is looked up by name first):
  projects demo, other, service (domain Default)
  users    demo (member on demo), demo-reader (reader on demo), demo-admin (admin on demo),
           other (member on other), pir (service on service: validates tokens for PIR)
           password of each: "<name>-pass" (a local test service, never a real deployment)
  role     service (bootstrap makes admin > member > reader; Zed has no service role)
  catalog  service "pir" of type image, public/internal/admin endpoints in RegionOne at
           $PIR_KEYSTONE_IMAGE_URL (default http://127.0.0.1:9292)
The admin password is $PIR_KEYSTONE_ADMIN_PASSWORD (default admin-pass).
"""
import json
import os
import sys
import urllib.error
import urllib.request

USERS = [  # name, project, role
    ("demo", "demo", "member"),
    ("demo-reader", "demo", "reader"),
    ("demo-admin", "demo", "admin"),
    ("other", "other", "member"),
    ("pir", "service", "service"),
]


def call(method, url, token=None, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("X-Auth-Token", token)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return resp.status, resp.headers, (json.loads(raw) if raw else None)


def health(url):
    try:
        status, _, _ = call("GET", url)
        return 0 if status == 200 else 1
    except (urllib.error.URLError, OSError, ValueError) as e:
        print("keystone health probe on %s failed: %s" % (url, e), file=sys.stderr)
        return 1


def admin_token(k):
    admin_pass = os.environ.get("PIR_KEYSTONE_ADMIN_PASSWORD", "admin-pass")
    _, headers, _ = call("POST", k + "/auth/tokens", body={"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": admin_pass}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    return headers["X-Subject-Token"]


def warm(k):
    """One token issued and validated before any client comes: Keystone's first token request
    initialises shared state lazily, and two first requests on two uwsgi threads at once can
    deadlock it for good (eventlet: 'cannot switch to a different thread'; seen in CI)."""
    tok = admin_token(k)
    req = urllib.request.Request(k + "/auth/tokens", method="GET")
    req.add_header("X-Auth-Token", tok)
    req.add_header("X-Subject-Token", tok)
    with urllib.request.urlopen(req, timeout=30) as resp:
        resp.read()
    return 0


def seed(k):
    image_url = os.environ.get("PIR_KEYSTONE_IMAGE_URL", "http://127.0.0.1:9292")
    tok = admin_token(k)

    def find_or_create(collection, key, name, body, query=None):
        _, _, found = call("GET", "%s/%s?%s" % (k, collection, query or "name=" + name), tok)
        if found[collection]:
            return found[collection][0]["id"]
        _, _, made = call("POST", "%s/%s" % (k, collection), tok, {key: body})
        return made[key]["id"]

    projects = {p: find_or_create("projects", "project", p, {"name": p, "domain_id": "default", "description": p + " project (PIR tests)"})
                for p in ("demo", "other", "service")}
    find_or_create("roles", "role", "service", {"name": "service"})
    roles = {}
    for r in ("admin", "member", "reader", "service"):
        _, _, found = call("GET", k + "/roles?name=" + r, tok)
        roles[r] = found["roles"][0]["id"]
    for name, project, role in USERS:
        uid = find_or_create("users", "user", name, {"name": name, "domain_id": "default", "password": name + "-pass",
                                                     "default_project_id": projects[project]})
        call("PUT", "%s/projects/%s/users/%s/roles/%s" % (k, projects[project], uid, roles[role]), tok)
    service = find_or_create("services", "service", "pir", {"name": "pir", "type": "image", "description": "PIR image service"},
                             query="type=image")
    _, _, eps = call("GET", "%s/endpoints?service_id=%s&region_id=RegionOne" % (k, service), tok)
    have = {e["interface"]: e for e in eps["endpoints"]}
    for interface in ("public", "internal", "admin"):
        if interface in have:
            if have[interface]["url"] != image_url:
                call("PATCH", "%s/endpoints/%s" % (k, have[interface]["id"]), tok, {"endpoint": {"url": image_url}})
        else:
            call("POST", k + "/endpoints", tok, {"endpoint": {"service_id": service, "interface": interface,
                                                               "region_id": "RegionOne", "url": image_url}})
    print("projects %s; users %s; image service %s at %s" % (
        ", ".join("%s=%s" % kv for kv in projects.items()), ", ".join(u[0] for u in USERS), service, image_url))
    return 0


def main(argv):
    if len(argv) != 2 or argv[0] not in ("health", "seed", "warm"):
        print(__doc__, file=sys.stderr)
        return 2
    url = argv[1].rstrip("/")
    if argv[0] == "health":
        return health(url)
    try:
        return warm(url) if argv[0] == "warm" else seed(url)
    except urllib.error.HTTPError as e:
        print("seeding failed: %s %s: %s" % (e.code, e.url, e.read()[:500]), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
