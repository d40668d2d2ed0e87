"""Register Glance in one Keystone and check that every Glance answers an authenticated request (idempotent).

usage: ADMIN_PASSWORD=... GLANCE_PASSWORD=... setup_catalog.py AUTH_URL REGION=GLANCE_URL [REGION=GLANCE_URL ...]

Creates the regions, the `image` service with public/internal/admin endpoints per region, and the `glance`
service user (project `service`, roles admin + service) that Glance's keystonemiddleware uses to validate
tokens.  Existing endpoints whose URL differs are corrected.  Then, per region, lists images through the
catalog: that proves Keystone, the catalog, Glance and Glance's service credentials all work together.
Passwords come from the environment so that they do not show in `ps`.
"""

import os
import sys
import time

import openstack

VERIFY_TIMEOUT_S = 60


def connect(auth_url, password, region):
    return openstack.connect(
        auth_url=auth_url,
        username="admin",
        password=password,
        project_name="admin",
        user_domain_name="Default",
        project_domain_name="Default",
        region_name=region,
        identity_api_version="3",
        image_api_version="2",
    )


def register(idm, regions, glance_password):
    for region, _url in regions:
        if not idm.find_region(region):
            idm.create_region(id=region)
    service = idm.find_service("glance") or idm.create_service(
        name="glance", type="image", description="Glance Image Service"
    )
    existing = {(e.region_id, e.interface): e for e in idm.endpoints(service_id=service.id)}
    for region, url in regions:
        for interface in ("public", "internal", "admin"):
            endpoint = existing.get((region, interface))
            if endpoint is None:
                idm.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=region)
            elif endpoint.url != url:
                idm.update_endpoint(endpoint, url=url)
    domain = idm.find_domain("default")
    project = idm.find_project("service", domain_id=domain.id) or idm.create_project(
        name="service", domain_id=domain.id
    )
    # The password is only set on creation (start.sh refuses changed passwords on existing data).
    user = idm.find_user("glance", domain_id=domain.id) or idm.create_user(
        name="glance", password=glance_password, domain_id=domain.id, default_project_id=project.id
    )
    for role_name in ("admin", "service"):
        role = idm.find_role(role_name) or idm.create_role(name=role_name)
        idm.assign_project_role_to_user(project, user, role)


def verify(auth_url, password, regions):
    """GET /v2/images in every region through the catalog, with retries (a Glance may still be starting).

    A new connection: the catalog travels with the token, and the first token predates the new endpoints.
    """
    deadline = time.monotonic() + VERIFY_TIMEOUT_S
    conn = connect(auth_url, password, regions[0][0])
    for region, url in regions:
        while True:
            try:
                endpoint = conn.session.get_endpoint(service_type="image", region_name=region, interface="public")
                if endpoint.rstrip("/") != url.rstrip("/"):
                    raise RuntimeError(f"the catalog says {endpoint!r}")
                conn.session.get(url.rstrip("/") + "/v2/images?limit=1")  # raises on an HTTP error
                break
            except Exception as exc:
                if time.monotonic() > deadline:
                    sys.exit(f"setup_catalog: Glance {region} at {url} (Keystone {auth_url}) does not work: {exc}")
                time.sleep(0.5)
                conn = connect(auth_url, password, regions[0][0])


def main():
    auth_url = sys.argv[1]
    regions = [arg.split("=", 1) for arg in sys.argv[2:]]
    admin_password = os.environ["ADMIN_PASSWORD"]
    conn = connect(auth_url, admin_password, regions[0][0])
    register(conn.identity, regions, os.environ["GLANCE_PASSWORD"])
    verify(auth_url, admin_password, regions)
    print(f"setup_catalog: {auth_url}: " + ", ".join(f"{region}={url}" for region, url in regions) + " OK")


if __name__ == "__main__":
    main()
