export * from './client.js';
export * from './errors.js';
export { Transport, type RawResponse, type Headers } from './http.js';
export { sendFile, type SentFile, type SendFileOptions } from './upload.js';
export { downloadImage, downloadToStream, partPath, type DownloadExpectation, type DownloadOptions, type DownloadResult } from './download.js';
export { keystoneLogin, imageEndpoint, type KeystoneCredentials, type KeystoneSession } from './keystone.js';
export { MetadefsApi, exportable, type MetadefNamespace } from './metadefs.js';
export { WebhooksApi, type Webhook, type WebhookInput, type WebhookFilters, type Delivery, type DeliveryAttempt } from './webhooks.js';
export { CatalogClient, GalleryNotFound, type GalleryRecord, type MetafileRecord, type RevisionRecord } from './catalog.js';
