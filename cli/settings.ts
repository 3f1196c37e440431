/**
 * Where the client commands find PIR and their credentials: flags, then PIR_* / OS_* environment
 * variables, then a named profile of the config file ($PIR_CONFIG, else
 * $XDG_CONFIG_HOME/pir/config.json, ~/.config/pir/config.json by default; mode 0600). A Keystone login turns a user name and password into a token and, unless --url
 * says otherwise, finds PIR's endpoint in the catalog. (Server settings live in infra/config.ts;
 * this module only configures the client.)
 */
import { readFileSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_IDLE_TIMEOUT_MS, imageEndpoint, keystoneLogin, withoutUserinfo, withoutVersion } from '../client/index.js';
import { CredentialsError, UsageError } from './exit-codes.js';

export const DEFAULT_URL = 'http://127.0.0.1:9292';

/** The flags every client command takes (commander's camelCase names). */
export interface ConnectionFlags {
  url?: string;
  token?: string;
  profile?: string;
  osAuthUrl?: string;
  osUsername?: string;
  osPassword?: string;
  osProjectName?: string;
  osProjectId?: string;
  osUserDomainName?: string;
  osProjectDomainName?: string;
  osInterface?: string;
  osRegionName?: string;
  /** Seconds a connection may stay silent (--http-timeout), already parsed by commander. */
  httpTimeout?: number;
}

/** One profile of the config file (snake_case, as written by people). */
export interface Profile {
  url?: string;
  token?: string;
  os_auth_url?: string;
  os_username?: string;
  os_password?: string;
  os_project_name?: string;
  os_project_id?: string;
  os_user_domain_name?: string;
  os_project_domain_name?: string;
  os_interface?: string;
  os_region_name?: string;
}

export interface ConfigFile {
  default_profile?: string;
  profiles?: Record<string, Profile>;
}

export interface Connection {
  url: string;
  token: string;
  /** How long a request's connection may carry nothing before it fails. */
  idleTimeoutMs: number;
  /** Where the settings came from, for messages. */
  source: string;
  /** The token came from a Keystone login (--os-auth-url), not from the user. */
  keystone: boolean;
}

const PROFILE_KEYS: (keyof Profile)[] = ['url', 'token', 'os_auth_url', 'os_username', 'os_password', 'os_project_name', 'os_project_id', 'os_user_domain_name', 'os_project_domain_name', 'os_interface', 'os_region_name'];

/** Environment variables per setting (the OS_* ones are OpenStack's usual names). */
const ENV: Record<keyof Profile, string> = {
  url: 'PIR_URL', token: 'PIR_TOKEN', os_auth_url: 'OS_AUTH_URL', os_username: 'OS_USERNAME', os_password: 'OS_PASSWORD',
  os_project_name: 'OS_PROJECT_NAME', os_project_id: 'OS_PROJECT_ID', os_user_domain_name: 'OS_USER_DOMAIN_NAME',
  os_project_domain_name: 'OS_PROJECT_DOMAIN_NAME', os_interface: 'OS_INTERFACE', os_region_name: 'OS_REGION_NAME',
};

export function configPath(env: NodeJS.ProcessEnv = process.env): { path: string; explicit: boolean } {
  if (env.PIR_CONFIG) return { path: env.PIR_CONFIG, explicit: true };
  const base = env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config');
  return { path: join(base, 'pir', 'config.json'), explicit: false };
}

/** Reads the config file; refuses one that others may read (it holds tokens and passwords). */
export function readConfigFile(path: string, mustExist: boolean): ConfigFile | null {
  let mode: number;
  try {
    mode = statSync(path).mode;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT' && !mustExist) return null;
    throw new UsageError(`cannot read the config file ${path}: ${(error as Error).message}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new UsageError(`the config file ${path} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}, so other users can read the tokens and passwords in it; run: chmod 600 ${path}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw new UsageError(`the config file ${path} is not valid JSON (${(error as Error).message}); see "pir --help" for its shape`);
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new UsageError(`the config file ${path} must hold a JSON object: {"default_profile": "...", "profiles": {"name": {"url": "...", "token": "..."}}}`);
  const file = parsed as ConfigFile;
  for (const [name, profile] of Object.entries(file.profiles ?? {})) {
    for (const key of Object.keys(profile ?? {})) {
      if (!PROFILE_KEYS.includes(key as keyof Profile)) throw new UsageError(`profile '${name}' in ${path} has an unknown key '${key}'; known keys: ${PROFILE_KEYS.join(', ')}`);
    }
  }
  return file;
}

/** Merges flags over the environment over the profile: the settings before any login. */
export function resolveSettings(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): { settings: Profile; source: string } {
  const { path, explicit } = configPath(env);
  const profileName = flags.profile ?? env.PIR_PROFILE;
  const file = readConfigFile(path, explicit || profileName !== undefined);
  let profile: Profile = {};
  let source = 'flags and environment';
  const chosen = profileName ?? file?.default_profile ?? (file?.profiles?.default ? 'default' : undefined);
  if (chosen !== undefined) {
    const found = file?.profiles?.[chosen];
    if (!found) {
      const known = Object.keys(file?.profiles ?? {});
      throw new UsageError(`no profile '${chosen}' in ${path}${known.length ? `; profiles there: ${known.join(', ')}` : ''}`);
    }
    profile = found;
    source = `profile '${chosen}' of ${path}`;
  }
  const fromFlags: Profile = {
    url: flags.url, token: flags.token, os_auth_url: flags.osAuthUrl, os_username: flags.osUsername, os_password: flags.osPassword,
    os_project_name: flags.osProjectName, os_project_id: flags.osProjectId, os_user_domain_name: flags.osUserDomainName,
    os_project_domain_name: flags.osProjectDomainName, os_interface: flags.osInterface, os_region_name: flags.osRegionName,
  };
  const settings: Profile = {};
  for (const key of PROFILE_KEYS) {
    const value = fromFlags[key] ?? (env[ENV[key]] || undefined) ?? profile[key];
    if (value !== undefined) settings[key] = value;
  }
  return { settings, source };
}

/** The URL and token to use: a given token, else a Keystone login, else an error saying how to give one. */
export async function connect(flags: ConnectionFlags, env: NodeJS.ProcessEnv = process.env): Promise<Connection> {
  const { settings, source } = resolveSettings(flags, env);
  const idleTimeoutMs = httpTimeoutMs(flags, env);
  if (settings.url !== undefined) checkUrl(settings.url, 'the PIR URL (--url, PIR_URL or the profile\'s "url")');
  if (settings.token) return { url: withoutVersion(settings.url ?? DEFAULT_URL), token: settings.token, source, idleTimeoutMs, keystone: false };
  if (settings.os_auth_url) {
    checkUrl(settings.os_auth_url, 'the Keystone URL (--os-auth-url)');
    if (!settings.os_username || !settings.os_password) {
      throw new CredentialsError('a Keystone login needs --os-username and --os-password (or OS_USERNAME and OS_PASSWORD, or the profile\'s os_username and os_password)');
    }
    const session = await keystoneLogin({
      authUrl: settings.os_auth_url, username: settings.os_username, password: settings.os_password,
      projectName: settings.os_project_name, projectId: settings.os_project_id,
      userDomainName: settings.os_user_domain_name, projectDomainName: settings.os_project_domain_name,
    }, { idleTimeoutMs });
    const url = settings.url !== undefined ? withoutVersion(settings.url) : imageEndpoint(session, settings.os_interface ?? 'public', settings.os_region_name);
    if (!url) throw new UsageError(`Keystone's catalog has no ${settings.os_interface ?? 'public'} endpoint of type 'image'${settings.os_region_name ? ` in region ${settings.os_region_name}` : ''}; give PIR's address with --url`);
    return { url, token: session.token, source: `Keystone at ${withoutUserinfo(settings.os_auth_url)}`, idleTimeoutMs, keystone: true };
  }
  throw new CredentialsError(`no token: pass --token, set PIR_TOKEN, add a profile to ${configPath(env).path} (see "pir --help"), or log in to Keystone with --os-auth-url, --os-username and --os-password. For a local "pir serve", the token is in <data dir>/admin-token.`);
}

/** --http-timeout, else PIR_HTTP_TIMEOUT, else glanceclient's 600 s. */
function httpTimeoutMs(flags: ConnectionFlags, env: NodeJS.ProcessEnv): number {
  if (flags.httpTimeout !== undefined) return flags.httpTimeout * 1000;
  const fromEnv = env.PIR_HTTP_TIMEOUT;
  if (!fromEnv) return DEFAULT_IDLE_TIMEOUT_MS;
  const n = Number(fromEnv);
  if (!Number.isFinite(n) || n <= 0) throw new UsageError(`PIR_HTTP_TIMEOUT must be a number of seconds > 0 (got '${fromEnv}')`);
  return n * 1000;
}

function checkUrl(value: string, what: string): void {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${what} '${withoutUserinfo(value)}' is not a URL; write it like http://127.0.0.1:9292`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`${what} '${withoutUserinfo(value)}' must start with http:// or https://`);
}

export const CONFIG_HELP = `Configuration (client commands):
  Settings come from flags, then environment variables, then a profile of the config file.
    --url / PIR_URL          PIR's address (default ${DEFAULT_URL})
    --token / PIR_TOKEN      the X-Auth-Token
    --profile / PIR_PROFILE  a profile of the config file
    --os-auth-url, --os-username, --os-password, --os-project-name (or --os-project-id),
    --os-user-domain-name, --os-project-domain-name, --os-interface, --os-region-name
                             Keystone password login (OS_AUTH_URL, OS_USERNAME, … also work);
                             PIR's address comes from the catalog (type image) unless --url is given
  A --url (or catalog endpoint) ending in /v2 or /v2.N is taken without it.
  Config file: $PIR_CONFIG, else $XDG_CONFIG_HOME/pir/config.json (~/.config/pir/config.json
  when XDG_CONFIG_HOME is unset), mode 0600 (refused otherwise):
    {"default_profile": "local",
     "profiles": {"local": {"url": "http://127.0.0.1:9292", "token": "…"},
                  "cloud": {"os_auth_url": "https://keystone.example:5000/v3", "os_username": "me",
                            "os_password": "…", "os_project_name": "images"}}}`;
