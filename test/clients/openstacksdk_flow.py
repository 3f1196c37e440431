#!/usr/bin/env python3
"""openstacksdk (PyPI) against PIR: the ordinary image calls a user makes, one JSON line per step.

Run by test/e2e/openstacksdk.test.ts with the venv that `infra/local/services.sh install clients`
builds. Every step prints {"step", "ok", "detail"} on stdout; a step whose prerequisite failed is
reported as not ok ("needs ..."), so the caller sees every step, never a silent gap.

Environment:
  PIR_ENDPOINT          Image API endpoint, e.g. http://127.0.0.1:9292
  PIR_TOKEN_A           token of project A (role member): owns the images
  PIR_TOKEN_B           token of project B (role member): the image member
  PIR_PROJECT_B         project id of B
  PIR_TOKEN_ADMIN       an administrator's token (metadata definitions are changed by admins)
  PIR_IMAGE_FILE        the file uploaded and staged (raw disk image)
  PIR_RUN_ID            unique suffix for names, tags and property values
"""
import hashlib
import json
import os
import sys
import traceback
from importlib import metadata

from keystoneauth1 import session as ksa_session
from keystoneauth1 import token_endpoint
from openstack import connection
from openstack import exceptions

STEPS = [
    'connect', 'create', 'upload', 'stage', 'import', 'wait', 'list_property', 'list_tag',
    'list_status', 'update', 'tags', 'member_create', 'member_accept', 'member_list',
    'member_delete', 'download', 'delete',
    # Glance's metadata definitions catalog (README "Metadata definitions")
    'metadef_create', 'metadef_read', 'metadef_refused', 'metadef_change', 'metadef_delete',
]


def report(step, ok, detail):
    print(json.dumps({'step': step, 'ok': bool(ok), 'detail': detail}), flush=True)


def connect(endpoint, token):
    # No Keystone here: a fixed endpoint and token, as `openstack --os-auth-type admin_token` does.
    # The token plugin has no catalog, so keystoneauth cannot map the unversioned endpoint to
    # the v2 API the way a Keystone catalog lookup does: point the SDK at /v2 itself, as a
    # clouds.yaml `image_endpoint_override` would.
    sess = ksa_session.Session(auth=token_endpoint.Token(endpoint, token))
    return connection.Connection(session=sess, image_api_version='2', image_endpoint_override=endpoint)


def digests_of_file(path):
    md5, sha512 = hashlib.md5(), hashlib.sha512()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            md5.update(chunk)
            sha512.update(chunk)
    return md5.hexdigest(), sha512.hexdigest()


class Flow:
    def __init__(self):
        self.endpoint = os.environ['PIR_ENDPOINT'].rstrip('/')
        self.file = os.environ['PIR_IMAGE_FILE']
        self.project_b = os.environ['PIR_PROJECT_B']
        run = os.environ.get('PIR_RUN_ID', str(os.getpid()))
        self.distro = f'pirdistro-{run}'
        self.tag = f'pirtag-{run}'
        self.name = f'sdk-{run}'
        self.a = connect(self.endpoint, os.environ['PIR_TOKEN_A'])
        self.b = connect(self.endpoint, os.environ['PIR_TOKEN_B'])
        self.admin = connect(self.endpoint, os.environ['PIR_TOKEN_ADMIN'])
        self.public_ns = f'PIR::SDK::Public{run}'
        self.private_ns = f'PIR::SDK::Private{run}'
        self.ids = {}  # 'uploaded' (PUT file), 'imported' (glance-direct), 'queued' (never gets data)
        self.passed = set()

    def needs(self, *steps):
        missing = [s for s in steps if s not in self.passed]
        if missing:
            raise Skip(f'needs {", ".join(missing)}, which failed')

    def ids_where(self, conn, **query):
        return sorted(image.id for image in conn.image.images(**query))

    # ---- steps -------------------------------------------------------------------------------
    def step_connect(self):
        # Version discovery (GET /) through keystoneauth, then one list call with each token.
        for conn in (self.a, self.b):
            list(conn.image.images(limit=1, paginated=False))
        return f'openstacksdk {metadata.version("openstacksdk")}; both tokens list images'

    def step_create(self):
        created = {}
        for key, tags in (('uploaded', [self.tag, 'keep']), ('imported', []), ('queued', [])):
            image = self.a.image.create_image(
                f'{self.name}-{key}', disk_format='raw', container_format='bare', allow_duplicates=True,
                tags=tags, os_distro=self.distro, client_flow='openstacksdk')
            created[key] = image
            self.ids[key] = image.id
        image = created['uploaded']
        assert image.status == 'queued', f'new image status {image.status!r}, expected queued'
        assert image.properties.get('os_distro') == self.distro or image.os_distro == self.distro, \
            f'os_distro not stored: {image.to_dict()}'
        assert sorted(image.tags) == sorted([self.tag, 'keep']), f'tags {image.tags}'
        return f'3 images created: {self.ids}; owner {image.owner}'

    def step_upload(self):
        self.needs('create')
        image = self.a.image.get_image(self.ids['uploaded'])
        with open(self.file, 'rb') as data:
            image.data = data
            image.upload(self.a.image)  # PUT /v2/images/{id}/file
        image = self.a.image.get_image(image.id)
        assert image.status == 'active', f'status after PUT file: {image.status}'
        return f'PUT file -> {image.status}, size {image.size}'

    def step_stage(self):
        self.needs('create')
        # stage_image checks the image's status itself, so it takes the fetched image, not an id.
        image = self.a.image.stage_image(self.a.image.get_image(self.ids['imported']), filename=self.file)
        assert image.status == 'uploading', f'status after stage: {image.status}, expected uploading'
        return f'staged -> {image.status}'

    def step_import(self):
        self.needs('stage')
        response = self.a.image.import_image(self.a.image.get_image(self.ids['imported']), method='glance-direct')
        assert response.status_code == 202, f'import answered {response.status_code}'
        return 'glance-direct import accepted (202)'

    def step_wait(self):
        self.needs('import')
        image = self.a.image.get_image(self.ids['imported'])
        image = self.a.image.wait_for_status(image, status='active', failures=['killed', 'queued'], interval=0.2, wait=120)
        return f'imported image {image.id} is {image.status}'

    def step_list_property(self):
        self.needs('create')
        want = sorted(self.ids.values())
        # images(os_distro=...) is what a user writes, but the SDK filters properties outside its
        # query mapping on the client side; so also ask the server itself, through the SDK's adapter.
        got = self.ids_where(self.a, os_distro=self.distro)
        assert got == want, f'images(os_distro=...) returned {got}, expected {want}'
        for value, expected in ((self.distro, want), (self.distro + '-nomatch', [])):
            response = self.a.image.get('/images', params={'os_distro': value})
            server = sorted(image['id'] for image in response.json()['images'])
            assert server == expected, f'GET /v2/images?os_distro={value} returned {server}, expected {expected}'
        return f'?os_distro filter (server side) returned exactly the {len(got)} images, and none for another value'

    def step_list_tag(self):
        self.needs('create')
        got = self.ids_where(self.a, tag=self.tag)
        assert got == [self.ids['uploaded']], f'?tag={self.tag} returned {got}, expected [{self.ids["uploaded"]}]'
        return f'?tag filter returned {got}'

    def step_list_status(self):
        self.needs('upload', 'wait')
        queued = self.ids_where(self.a, status='queued', os_distro=self.distro)
        assert queued == [self.ids['queued']], f'?status=queued returned {queued}, expected [{self.ids["queued"]}]'
        active = self.ids_where(self.a, status='active', os_distro=self.distro)
        want = sorted([self.ids['uploaded'], self.ids['imported']])
        assert active == want, f'?status=active returned {active}, expected {want}'
        return f'?status=queued -> {len(queued)}, ?status=active -> {len(active)}'

    def step_update(self):
        self.needs('create')
        image = self.a.image.get_image(self.ids['uploaded'])
        # update_image computes a JSON patch and sends it as application/openstack-images-v2.1-json-patch.
        self.a.image.update_image(image, name=f'{self.name}-renamed', min_ram=512, flow_updated='yes')
        image = self.a.image.get_image(image.id)
        assert image.name == f'{self.name}-renamed', f'name {image.name!r}'
        assert image.min_ram == 512, f'min_ram {image.min_ram!r}'
        assert image.properties.get('flow_updated') == 'yes', f'property not set: {image.properties}'
        return 'PATCH renamed, min_ram=512, flow_updated=yes'

    def step_tags(self):
        self.needs('create')
        image_id = self.ids['uploaded']
        self.a.image.add_tag(image_id, 'added-by-sdk')  # PUT …/tags/{tag}
        self.a.image.remove_tag(image_id, 'keep')       # DELETE …/tags/{tag}
        tags = sorted(self.a.image.get_image(image_id).tags)
        want = sorted([self.tag, 'added-by-sdk'])
        assert tags == want, f'tags {tags}, expected {want}'
        return f'tags now {tags}'

    def step_member_create(self):
        self.needs('create')
        image_id = self.ids['uploaded']
        # Only shared images take members (Glance): make it shared first.
        self.a.image.update_image(image_id, visibility='shared')
        member = self.a.image.add_member(image_id, member=self.project_b)
        assert member.status == 'pending', f'new member status {member.status!r}, expected pending'
        return f'member {self.project_b} added, status {member.status}'

    def step_member_accept(self):
        self.needs('member_create')
        image_id = self.ids['uploaded']
        assert image_id not in self.ids_where(self.b), 'B lists the image before accepting (Glance lists accepted only)'
        member = self.b.image.update_member(self.project_b, image_id, status='accepted')
        assert member.status == 'accepted', f'member status {member.status!r}'
        assert image_id in self.ids_where(self.b), 'B does not list the image after accepting'
        return 'B accepted and now lists the image'

    def step_member_list(self):
        self.needs('member_accept')
        members = [(m.member_id, m.status) for m in self.a.image.members(self.ids['uploaded'])]
        assert members == [(self.project_b, 'accepted')], f'members {members}'
        return f'members {members}'

    def step_member_delete(self):
        self.needs('member_create')
        image_id = self.ids['uploaded']
        self.a.image.remove_member(self.project_b, image_id, ignore_missing=False)
        assert list(self.a.image.members(image_id)) == [], 'member still listed after delete'
        try:
            self.b.image.get_image(image_id)
        except exceptions.NotFoundException:
            return 'member removed; B gets 404 for the image'
        raise AssertionError('B still sees the image after its membership was deleted')

    def step_download(self):
        self.needs('upload')
        md5, sha512 = digests_of_file(self.file)
        checked = []
        for key in ('uploaded', 'imported'):
            if key == 'imported' and 'wait' not in self.passed:
                continue
            got_md5, got_sha512, size = hashlib.md5(), hashlib.sha512(), 0
            # stream=True: chunks, never the whole image in memory; the SDK checks the checksum too.
            response = self.a.image.download_image(self.ids[key], stream=True)
            for chunk in response.iter_content(chunk_size=1 << 20):
                got_md5.update(chunk)
                got_sha512.update(chunk)
                size += len(chunk)
            assert got_md5.hexdigest() == md5, f'{key}: md5 {got_md5.hexdigest()} != uploaded {md5}'
            assert got_sha512.hexdigest() == sha512, f'{key}: sha512 differs from the uploaded file'
            image = self.a.image.get_image(self.ids[key])
            assert image.hash_value == sha512, f'{key}: os_hash_value {image.hash_value} != sha512 of the file'
            checked.append(f'{key} ({size} bytes)')
        if 'wait' not in self.passed:
            raise AssertionError(f'verified {checked}; the imported image was not checked because wait failed')
        return f'md5 and sha512 match for {", ".join(checked)}'

    def step_delete(self):
        self.needs('create')
        for image_id in self.ids.values():
            self.a.image.delete_image(image_id, ignore_missing=False)
        for image_id in self.ids.values():
            try:
                self.a.image.get_image(image_id)
                raise AssertionError(f'{image_id} still shown after delete')
            except exceptions.NotFoundException:
                pass
        return f'{len(self.ids)} images deleted; each now 404'

    def step_metadef_create(self):
        image = self.admin.image
        for name, visibility in ((self.public_ns, 'public'), (self.private_ns, 'private')):
            ns = image.create_metadef_namespace(namespace=name, visibility=visibility, display_name=name, description='openstacksdk flow')
            assert ns.namespace == name and ns.visibility == visibility, f'created {ns.to_dict()}'
        image.create_metadef_property(self.public_ns, name='cores', title='Cores', type='integer', minimum=1)
        image.create_metadef_object(self.public_ns, name='Watchdog', description='a watchdog',
                                    properties={'action': {'title': 'Action', 'type': 'string', 'enum': ['reset', 'none']}}, required=['action'])
        assoc = image.create_metadef_resource_type_association(self.public_ns, name='OS::Glance::Image', prefix='sdk_')
        assert assoc.prefix == 'sdk_', f'association {assoc.to_dict()}'
        return f'{self.public_ns} (a property, an object, an association) and {self.private_ns}'

    def step_metadef_read(self):
        self.needs('metadef_create')
        seen = {ns.namespace for ns in self.b.image.metadef_namespaces()}
        assert self.public_ns in seen, f'B does not list the public namespace: {sorted(seen)}'
        assert self.private_ns not in seen, 'B lists the admin\'s private namespace'
        ns = self.b.image.get_metadef_namespace(self.public_ns)
        assert ns.display_name == self.public_ns, f'shown {ns.to_dict()}'
        props = [p.name for p in self.b.image.metadef_properties(self.public_ns)]
        assert props == ['cores'], f'properties {props}'
        assert self.b.image.get_metadef_property('cores', self.public_ns).minimum == 1
        objects = [o.name for o in self.b.image.metadef_objects(self.public_ns)]
        assert objects == ['Watchdog'], f'objects {objects}'
        assert self.b.image.get_metadef_object('Watchdog', self.public_ns).required == ['action']
        assocs = [a.name for a in self.b.image.metadef_resource_type_associations(self.public_ns)]
        assert assocs == ['OS::Glance::Image'], f'associations {assocs}'
        types = [t.name for t in self.b.image.metadef_resource_types()]
        assert 'OS::Glance::Image' in types and 'OS::Nova::Flavor' in types, f'resource types {types}'
        return f'B reads the public namespace and what it holds; {len(types)} resource types'

    def step_metadef_refused(self):
        self.needs('metadef_create')
        try:
            self.b.image.get_metadef_namespace(self.private_ns)
            raise AssertionError('B reads the admin\'s private namespace')
        except exceptions.NotFoundException:
            pass
        try:
            self.b.image.create_metadef_namespace(namespace=f'{self.public_ns}B')
            raise AssertionError('a member created a namespace')
        except exceptions.ForbiddenException:
            pass
        try:
            self.b.image.delete_metadef_namespace(self.public_ns)
            raise AssertionError('a member deleted a namespace')
        except exceptions.ForbiddenException:
            pass
        return 'private namespace 404 to B; create and delete 403 to a member'

    def step_metadef_change(self):
        self.needs('metadef_create')
        image = self.admin.image
        image.update_metadef_namespace(self.public_ns, display_name='renamed', visibility='public')
        shown = image.get_metadef_namespace(self.public_ns)
        assert shown.display_name == 'renamed', f'after update {shown.to_dict()}'
        image.update_metadef_property('cores', self.public_ns, name='cores', title='CPU cores', type='integer')
        assert image.get_metadef_property('cores', self.public_ns).title == 'CPU cores'
        image.delete_metadef_resource_type_association('OS::Glance::Image', self.public_ns)
        assert list(image.metadef_resource_type_associations(self.public_ns)) == []
        image.delete_metadef_object('Watchdog', self.public_ns)
        image.delete_metadef_property('cores', self.public_ns)
        assert list(image.metadef_properties(self.public_ns)) == [] and list(image.metadef_objects(self.public_ns)) == []
        return 'namespace and property updated; association, object and property deleted'

    def step_metadef_delete(self):
        self.needs('metadef_create')
        for name in (self.public_ns, self.private_ns):
            self.admin.image.delete_metadef_namespace(name)
        left = [ns.namespace for ns in self.admin.image.metadef_namespaces() if ns.namespace.startswith('PIR::SDK::')]
        assert left == [], f'left after delete: {left}'
        return 'both namespaces deleted'

    def run(self):
        for step in STEPS:
            try:
                detail = getattr(self, f'step_{step}')()
                self.passed.add(step)
                report(step, True, detail)
            except Skip as skip:
                report(step, False, str(skip))
            except Exception as error:  # every failure is reported, with what the server said
                report(step, False, describe(error))
        # Leave nothing behind even when delete failed (the server's data dir is temporary anyway).
        for image_id in self.ids.values():
            try:
                self.a.image.delete_image(image_id, ignore_missing=True)
            except Exception:
                pass


class Skip(Exception):
    pass


def describe(error):
    if isinstance(error, exceptions.HttpException):
        body = (error.response.text if error.response is not None else '')[:600]
        return f'{type(error).__name__}: HTTP {error.status_code} {error.request_id or ""} {body}'.strip()
    if isinstance(error, AssertionError):
        return f'assertion: {error}'
    return f'{type(error).__name__}: {error} @ {traceback.format_exc().strip().splitlines()[-3:]}'


if __name__ == '__main__':
    try:
        flow = Flow()
    except Exception as error:
        report('connect', False, describe(error))
        sys.exit(2)
    flow.run()
