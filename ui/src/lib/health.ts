// What each server state looks like and what the user can do about it.
import type { ServerState } from './types';

export type Tone = 'good' | 'busy' | 'warn' | 'bad' | 'idle';

export type Remedy = 'retry' | 'sign_in' | 'contact_it' | 'connect' | null;

export interface Badge {
  label: string;
  tone: Tone;
}

export function badge(state: ServerState): Badge {
  switch (state.state) {
    case 'granted':
      return { label: 'Granted', tone: 'good' };
    case 'granting':
      return { label: 'Getting access…', tone: 'busy' };
    case 'failing':
      return { label: 'Retrying', tone: 'warn' };
    case 'denied':
      return { label: 'Blocked', tone: 'bad' };
    case 'step_up_required':
      return { label: 'Sign in again', tone: 'bad' };
    case 'not_signed_in':
      return { label: 'Waiting for sign-in', tone: 'idle' };
    case 'needs_connect':
      return { label: 'Not connected', tone: 'idle' };
    case 'ready_on_first_use':
      return { label: 'Ready on first use', tone: 'good' };
  }
}

/** A calm word on a server that is fine but not kept warm (null otherwise). */
export function note(state: ServerState): string | null {
  if (state.state !== 'ready_on_first_use') return null;
  return state.reason === 'near_budget'
    ? 'Near this month’s budget, so not refreshed in the background. Your apps still get a token when they ask.'
    : 'Not kept fresh while no app uses it. The next request gets a token in a moment.';
}

/** The button that fixes a state, if any. */
export function remedy(state: ServerState): Remedy {
  switch (state.state) {
    case 'failing':
      return 'retry';
    case 'step_up_required':
      return 'sign_in';
    case 'denied':
      return 'contact_it';
    case 'needs_connect':
      return 'connect';
    default:
      return null;
  }
}

/** The state's problem in words (null when there is none). */
export function problem(state: ServerState): string | null {
  switch (state.state) {
    case 'failing':
      return `Can't get a token right now: ${state.error}.`;
    case 'denied':
      return state.description
        ? `Blocked by your organization: ${state.description}.`
        : 'Blocked by your organization — contact IT if you need access.';
    case 'step_up_required':
      return 'This server asks for a recent sign-in.';
    case 'needs_connect':
      return 'Not connected yet. Connect once in your browser; Lanyard keeps it connected after that.';
    default:
      return null;
  }
}
