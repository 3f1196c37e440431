import { render } from 'preact';
import { App } from './app';

const root = document.getElementById('app')!;
root.textContent = ''; // the "Loading…" line shown before the script ran
render(<App />, root);
