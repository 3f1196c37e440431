/** Picks the identity adapter from the config: Keystone when configured, else the tokens file. */
import type { Logger } from 'pino';
import type { Authenticator } from '../../core/authenticator.js';
import { ConfigError, type PirConfig } from '../config.js';
import { KeystoneAuthenticator } from './keystone.js';
import { TokensFileAuthenticator, TokensFileError } from './tokens-file.js';

export async function openAuthenticator(config: PirConfig, adminToken: string | null, log: Logger): Promise<Authenticator> {
  if (config.keystone) {
    if (config.adminToken) log.warn('PIR_ADMIN_TOKEN is ignored: with PIR_KEYSTONE_URL set, only Keystone tokens are accepted');
    log.info({ keystone: config.keystone.url, user: config.keystone.username }, 'identity: Keystone');
    const keystone = new KeystoneAuthenticator(config.keystone, log);
    // Credentials Keystone refuses would make every request fail: said at start. Keystone not
    // answering yet is not: /readyz reports it until it does.
    await keystone.ready().catch(async (error: Error) => {
      if (!keystone.credentialsRefused) return;
      await keystone.close();
      throw new ConfigError('PIR_KEYSTONE_PASSWORD', error.message);
    });
    return keystone;
  }
  if (!adminToken) throw new Error('the tokens-file identity needs the admin token');
  try {
    const auth = await TokensFileAuthenticator.open({ path: config.tokensFile, adminToken, log });
    log.info({ tokens_file: config.tokensFile, tokens: auth.size }, 'identity: tokens file and admin token');
    return auth;
  } catch (error) {
    if (error instanceof TokensFileError) throw new ConfigError('PIR_TOKENS_FILE', error.message);
    throw error;
  }
}
