#!/usr/bin/env python3
"""openstacksdk (PyPI) against a multi-store PIR: stores(), import_image with stores, and
copy-image. Prints one JSON object with what it saw; test/e2e/multistore.test.ts checks it.

Environment: PIR_ENDPOINT, PIR_TOKEN (project member), PIR_ADMIN_TOKEN, PIR_IMAGE_FILE.
"""
import json
import os
import time

from keystoneauth1 import session as ksa_session
from keystoneauth1 import token_endpoint
from openstack import connection


def connect(endpoint, token):
    # A fixed endpoint and token, no Keystone (as test/clients/openstacksdk_flow.py).
    sess = ksa_session.Session(auth=token_endpoint.Token(endpoint, token))
    return connection.Connection(session=sess, image_api_version='2', image_endpoint_override=endpoint)


def wait(conn, image_id, done, timeout=120):
    deadline = time.time() + timeout
    while True:
        image = conn.image.get_image(image_id)
        if done(image) or time.time() > deadline:
            return image
        time.sleep(0.2)


def stores_of(image):
    # The SDK has no `stores` attribute: it keeps the fields it does not know among `properties`.
    return image.properties.get('stores')


def main():
    endpoint = os.environ['PIR_ENDPOINT'].rstrip('/')
    member = connect(endpoint, os.environ['PIR_TOKEN'])
    admin = connect(endpoint, os.environ['PIR_ADMIN_TOKEN'])
    seen = {'stores': [s.id for s in member.image.stores()]}
    image = member.image.create_image(name='sdk-multistore', disk_format='raw', container_format='bare')
    with open(os.environ['PIR_IMAGE_FILE'], 'rb') as f:
        member.image.stage_image(image, data=f)
    member.image.import_image(image, method='glance-direct', stores=['fast', 's3'], all_stores_must_succeed=True)
    imported = wait(member, image.id, lambda i: i.status not in ('uploading', 'importing'))
    seen['imported'] = {'status': imported.status, 'stores': stores_of(imported)}
    admin.image.import_image(image, method='copy-image', stores=['spare'])
    copied = wait(member, image.id, lambda i: 'spare' in (stores_of(i) or ''))
    seen['copied'] = {'status': copied.status, 'stores': stores_of(copied)}
    member.image.delete_image(image)
    print(json.dumps(seen))


main()
