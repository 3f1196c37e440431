/**
 * The image properties Glance's packaged schema-image.json declares (etc/schema-image.json:
 * kernel_id, ramdisk_id, instance_uuid, architecture, os_distro, os_version, description and
 * the Cinder encryption pair). They stay extra properties (strings in `properties`), but are
 * published in the image schema, so glanceclient offers `--os-distro`, `--architecture`… as it
 * does against Glance, and their values are checked as Glance's schema checks them.
 */
export interface CommonProperty {
  description: string;
  /** A regular expression the value must match. */
  pattern?: string;
  enum?: readonly string[];
  /** Glance types it `["null", "string"]`. */
  nullable?: boolean;
}

const UUID = '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$';

export const COMMON_PROPERTIES: Readonly<Record<string, CommonProperty>> = {
  kernel_id: { nullable: true, pattern: UUID, description: 'ID of image stored in PIR that should be used as the kernel when booting an AMI-style image.' },
  ramdisk_id: { nullable: true, pattern: UUID, description: 'ID of image stored in PIR that should be used as the ramdisk when booting an AMI-style image.' },
  instance_uuid: { description: 'Metadata which can be used to record which instance this image is associated with. (Informational only, does not create an instance snapshot.)' },
  architecture: { description: 'Operating system architecture as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html' },
  os_distro: { description: 'Common name of operating system distribution as specified in https://docs.openstack.org/python-glanceclient/latest/cli/property-keys.html' },
  os_version: { description: 'Operating system version as specified by the distributor.' },
  description: { description: 'A human-readable string describing this image.' },
  cinder_encryption_key_id: { description: 'Identifier in the OpenStack Key Management Service for the encryption key for the Block Storage Service to use when mounting a volume created from this image' },
  cinder_encryption_key_deletion_policy: {
    enum: ['on_image_deletion', 'do_not_delete'],
    description: "States the condition under which the Image Service will delete the object associated with the 'cinder_encryption_key_id' image property. If this property is missing, the Image Service will take no action",
  },
};

const patterns = new Map(Object.entries(COMMON_PROPERTIES).filter(([, p]) => p.pattern).map(([k, p]) => [k, new RegExp(p.pattern!)]));

/** Why `value` is not a valid value of common property `key`, or null when it is (or `key` is not one). */
export function commonPropertyProblem(key: string, value: string): string | null {
  const spec = COMMON_PROPERTIES[key];
  if (!spec) return null;
  if (patterns.get(key)?.test(value) === false) return `'${key}' must be an image id (a UUID such as 3d6a1a5e-6c1f-4a8e-9b1e-2f3c4d5e6f70), not '${value.slice(0, 64)}'.`;
  if (spec.enum && !spec.enum.includes(value)) return `'${key}' must be one of ${spec.enum.join(', ')} (not '${value.slice(0, 64)}').`;
  return null;
}

/**
 * The properties as JSON schema entries of /v2/schemas/image, typed as Glance's, with Glance's
 * `is_base: false`: glanceclient's update then adds such a property the image lacks (a base one
 * it would "replace", which answers 409 for a property the image does not have).
 */
export function commonPropertiesSchema(): Record<string, Record<string, unknown>> {
  return Object.fromEntries(Object.entries(COMMON_PROPERTIES).map(([key, p]) => [key, {
    type: p.nullable ? ['null', 'string'] : 'string',
    ...(p.pattern ? { pattern: p.pattern } : {}),
    ...(p.enum ? { enum: [...p.enum] } : {}),
    description: p.description,
    is_base: false,
  }]));
}
