/** Sign-in: a token, or (behind Keystone) a username, password and project exchanged through PIR's POST /auth/tokens. */
import { useState } from 'preact/hooks';
import { api, ApiError } from './api';
import { offersPasswordSignIn } from './features';
import { saveSession, type Session } from './session';

export function SignIn({ onSignedIn, problem }: { onSignedIn: (s: Session) => void; problem: string }) {
  const [keystone] = useState(offersPasswordSignIn);
  const [error, setError] = useState(problem);
  const [busy, setBusy] = useState(false);

  const finish = async (token: string, label: string) => {
    await api('/v2/images?limit=1', {}, token); // proves the token before keeping it
    const s = { token, label };
    saveSession(s);
    onSignedIn(s);
  };
  const attempt = (fn: () => Promise<void>) => async (e: Event) => {
    e.preventDefault();
    setBusy(true); setError('');
    try { await fn(); } catch (err) {
      setError(err instanceof ApiError && err.status === 401 ? `Not signed in: ${err.message}` : (err as Error).message);
    } finally { setBusy(false); }
  };
  const withToken = attempt(async () => {
    const token = (document.getElementById('signin-token') as HTMLInputElement).value.trim();
    if (!token) throw new Error('Enter a token.');
    await finish(token, 'token');
  });
  const withPassword = attempt(async () => {
    const field = (id: string) => (document.getElementById(id) as HTMLInputElement).value.trim();
    const body = { username: field('signin-user'), password: (document.getElementById('signin-password') as HTMLInputElement).value, project: field('signin-project'), user_domain: field('signin-domain') || undefined };
    const response = await api('/auth/tokens', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const answer = await response.json() as { token: string; user: { name: string }; project: { name: string } };
    await finish(answer.token, `${answer.user.name} @ ${answer.project.name}`);
  });

  return (
    <main class="signin">
      <h1>PIR console</h1>
      {keystone && (
        <form id="signin-keystone" onSubmit={withPassword} aria-label="Sign in with Keystone">
          <h2>Sign in with your OpenStack account</h2>
          <label>User name <input id="signin-user" autocomplete="username" required /></label>
          <label>Password <input id="signin-password" type="password" autocomplete="current-password" required /></label>
          <label>Project <input id="signin-project" required /></label>
          <label>Domain <input id="signin-domain" placeholder="Default" /></label>
          <button type="submit" disabled={busy}>Sign in</button>
        </form>
      )}
      <form id="signin" onSubmit={withToken} aria-label="Sign in with a token">
        <h2>{keystone ? 'Or with a token' : 'Sign in with a token'}</h2>
        <label>Token <input id="signin-token" type="password" autocomplete="off" spellcheck={false} required /></label>
        <button type="submit" disabled={busy}>Sign in</button>
      </form>
      <p id="signin-error" class="problem" role="alert">{error}</p>
      <p class="muted">The token stays in this browser tab (session storage) and is sent only as the X-Auth-Token header.</p>
    </main>
  );
}
