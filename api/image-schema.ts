/**
 * The JSON Schema of an image, served at /v2/schemas/image. Glance's clients build their
 * options and validate responses from it, so every field PIR shows is declared with its type.
 * (No `stores` property: it clashes with the glance CLI's own --stores option.)
 */
import { CONTAINER_FORMATS, DISK_FORMATS, IMAGE_STATUSES, VISIBILITIES } from '../schemas/image.js';

const nullableString = (description: string, maxLength?: number) => ({
  type: ['null', 'string'], description, ...(maxLength ? { maxLength } : {}),
});

export const imageSchema = {
  name: 'image',
  additionalProperties: { type: 'string' },
  links: [
    { rel: 'self', href: '{self}' },
    { rel: 'enclosure', href: '{file}' },
    { rel: 'describedby', href: '{schema}' },
  ],
  properties: {
    id: { type: 'string', description: 'An identifier for the image', pattern: '^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$' },
    name: nullableString('Descriptive name for the image', 255),
    status: { type: 'string', readOnly: true, description: 'Status of the image', enum: [...IMAGE_STATUSES] },
    visibility: { type: 'string', description: 'Scope of image accessibility', enum: [...VISIBILITIES] },
    protected: { type: 'boolean', description: 'If true, image will not be deletable.' },
    os_hidden: { type: 'boolean', description: 'If true, image will not appear in default image list response.' },
    checksum: { ...nullableString('md5 hash of image contents.', 32), readOnly: true },
    os_hash_algo: { ...nullableString('Algorithm to calculate the os_hash_value', 64), readOnly: true },
    os_hash_value: { ...nullableString('Hexdigest of the image contents using the algorithm specified by os_hash_algo', 128), readOnly: true },
    owner: nullableString('Owner of the image', 255),
    size: { type: ['null', 'integer'], readOnly: true, description: 'Size of image file in bytes' },
    virtual_size: { type: ['null', 'integer'], readOnly: true, description: 'Virtual size of image in bytes' },
    container_format: { type: ['null', 'string'], description: 'Format of the container', enum: [null, ...CONTAINER_FORMATS] },
    disk_format: { type: ['null', 'string'], description: 'Format of the disk', enum: [null, ...DISK_FORMATS] },
    created_at: { type: 'string', readOnly: true, description: 'Date and time of image registration' },
    updated_at: { type: 'string', readOnly: true, description: 'Date and time of the last image modification' },
    tags: { type: 'array', description: 'List of strings related to the image', items: { type: 'string', maxLength: 255 } },
    direct_url: { type: 'string', readOnly: true, description: 'URL to access the image file kept in external store' },
    min_ram: { type: 'integer', description: 'Amount of ram (in MB) required to boot image.' },
    min_disk: { type: 'integer', description: 'Amount of disk space (in GB) required to boot image.' },
    self: { type: 'string', readOnly: true, description: 'An image self url' },
    file: { type: 'string', readOnly: true, description: 'An image file url' },
    schema: { type: 'string', readOnly: true, description: 'An image schema url' },
    pir_stage: { ...nullableString('PIR: the pipeline stage an importing image is in'), readOnly: true },
    pir_pipeline: { type: ['null', 'object'], readOnly: true, description: 'PIR: the import pipeline run, with per-stage status and timings' },
    pir_failure: { type: ['null', 'object'], readOnly: true, description: 'PIR: why the image was killed: stage, code and message' },
  },
} as const;

export const imagesSchema = {
  name: 'images',
  properties: {
    images: { type: 'array', items: imageSchema },
    schema: { type: 'string' },
    first: { type: 'string' },
    next: { type: 'string' },
  },
  links: [
    { rel: 'first', href: '{first}' },
    { rel: 'next', href: '{next}' },
    { rel: 'describedby', href: '{schema}' },
  ],
};
