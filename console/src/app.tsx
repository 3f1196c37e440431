/** The console's shell: sign-in, the live event stream, and the hash routes (#/, #/images/<id>). */
import { useEffect, useMemo, useState } from 'preact/hooks';
import { getJson, setApiToken, type Image } from './api';
import { detectFeatures, type Features } from './features';
import { watchEvents, type Hello } from './live';
import { forgetSession, loadSession, type Session } from './session';
import { SignIn } from './signin';
import { ImageList } from './list';
import { ImagePage, mayCreate } from './image-page';
import { visible } from './format';
import { UploadPanel } from './upload-panel';
import { UploadQueue } from './upload';
import { LiveBus } from './live-bus';

const route = () => location.hash.replace(/^#/, '') || '/';

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [features, setFeatures] = useState<Features | null>(null);
  const [caller, setCaller] = useState<Hello | null>(null);
  const [connected, setConnected] = useState(false);
  const [path, setPath] = useState(route);
  const [problem, setProblem] = useState('');
  const live = useMemo(() => new LiveBus(), []);
  const queue = useMemo(() => new UploadQueue(() => features?.tus ?? false), [features]);

  const signOut = () => {
    forgetSession();
    setApiToken('', () => {});
    setSession(null); setFeatures(null); setCaller(null);
  };

  useEffect(() => {
    const onHash = () => setPath(route());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);

  useEffect(() => {
    if (!session) return;
    setApiToken(session.token, () => { signOut(); setProblem('Your token is no longer valid; sign in again.'); });
    detectFeatures().then(setFeatures, (e: Error) => setProblem(e.message));
    // Who the token is (its roles decide upload and editing), also when there is no event stream to say hello.
    let current = true;
    getJson<Hello>('/v2/info/caller').then((c) => { if (current) setCaller((old) => old ?? c); }, () => {});
    return () => { current = false; };
  }, [session]);

  useEffect(() => {
    if (!session || !features?.events) return;
    return watchEvents(session.token, {
      hello: setCaller,
      image: (type, image) => { live.emit(type, image); if (image.status === 'active' || image.status === 'killed') queue.settled(image); },
      state: setConnected,
    });
  }, [session, features, queue]);

  if (!session) return <SignIn onSignedIn={(s) => { setProblem(''); setSession(s); }} problem={problem} />;
  // Until the roles are known (GET /v2/info/caller, the stream's hello) the upload is not offered.
  const mayUpload = caller !== null && mayCreate(caller);
  const imageId = path.startsWith('/images/') ? decodeURIComponent(path.slice('/images/'.length)) : null;
  return (
    <div class="shell">
      <header class="top">
        <a class="brand" href="#/">PIR console</a>
        <span class={`live ${connected ? 'on' : 'off'}`} id="live-state" title="Live updates (server-sent events)">{connected ? 'live' : 'offline'}</span>
        <span class="who" id="who"><bdi>{caller ? `project ${visible(caller.project_id)}` : visible(session.label)}</bdi></span>
        <button type="button" id="signout" onClick={signOut}>Sign out</button>
      </header>
      {problem && <p class="problem" role="alert">{problem}</p>}
      {!features ? <p class="muted">Looking at what this PIR offers…</p> : (
        <main>
          {imageId
            ? <ImagePage key={imageId} id={imageId} features={features} caller={caller} live={live} />
            : <>
                {mayUpload && <UploadPanel queue={queue} features={features} />}
                <ImageList features={features} live={live} />
              </>}
        </main>
      )}
    </div>
  );
}

export type { Image };
