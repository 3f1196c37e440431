export * from './client.js';
export * from './errors.js';
export { Transport, IdleTimeoutError, DEFAULT_IDLE_TIMEOUT_MS, withoutVersion, type RawResponse, type Headers, type TransportOptions } from './http.js';
export { sendFile, type SentFile, type SendFileOptions } from './upload.js';
export { downloadImage, downloadToStream, partPath, type DownloadExpectation, type DownloadOptions, type DownloadResult } from './download.js';
export { keystoneLogin, imageEndpoint, type KeystoneCredentials, type KeystoneSession } from './keystone.js';
export { MetadefsApi, exportable, type MetadefNamespace } from './metadefs.js';
export { WebhooksApi, type Webhook, type WebhookInput, type WebhookFilters, type Delivery, type DeliveryAttempt } from './webhooks.js';
export { CatalogClient, GalleryAmbiguous, GalleryNotFound, GalleryReadOnly, type GalleryRecord, type MetafileRecord, type RevisionRecord } from './catalog.js';
