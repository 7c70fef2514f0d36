import { describe, expect, it } from 'vitest';
import { badge, problem, remedy } from '../src/lib/health';
import type { ServerState } from '../src/lib/types';

const states: Record<ServerState['state'], ServerState> = {
  not_signed_in: { state: 'not_signed_in' },
  needs_connect: { state: 'needs_connect' },
  granting: { state: 'granting' },
  granted: { state: 'granted', expires_at: 10, scopes: [], refresh_at: 5 },
  denied: { state: 'denied', code: 'access_denied', description: null },
  step_up_required: { state: 'step_up_required', max_age: 300 },
  failing: { state: 'failing', error: 'HTTP 503 from the IdP', retry_at: 9, attempts: 2 },
  ready_on_first_use: { state: 'ready_on_first_use', reason: 'unused' },
};

describe('badge', () => {
  it('gives every state its own words and a tone', () => {
    const labels = Object.values(states).map((s) => badge(s).label);
    expect(new Set(labels).size).toBe(labels.length);
    expect(badge(states.granted)).toEqual({ label: 'Granted', tone: 'good' });
    // Idle is calm: the good tone, no problem, no remedy.
    expect(badge(states.ready_on_first_use)).toEqual({ label: 'Ready on first use', tone: 'good' });
    expect(problem(states.ready_on_first_use)).toBeNull();
    expect(remedy(states.ready_on_first_use)).toBeNull();
    expect(badge(states.failing)).toEqual({ label: 'Retrying', tone: 'warn' });
    expect(badge(states.denied)).toEqual({ label: 'Blocked', tone: 'bad' });
    expect(badge(states.step_up_required).tone).toBe('bad');
  });
});

describe('remedy and problem', () => {
  it('offers the button that fixes the state', () => {
    expect(remedy(states.failing)).toBe('retry');
    expect(remedy(states.step_up_required)).toBe('sign_in');
    expect(remedy(states.denied)).toBe('contact_it');
    expect(remedy(states.granted)).toBeNull();
    expect(remedy(states.granting)).toBeNull();
  });
  it('explains the problem in words, with the IdP description when there is one', () => {
    expect(problem(states.failing)).toBe("Can't get a token right now: HTTP 503 from the IdP.");
    expect(problem(states.denied)).toBe('Blocked by your organization — contact IT if you need access.');
    expect(problem({ state: 'denied', code: 'x', description: 'not in group mcp-payroll' })).toBe(
      'Blocked by your organization: not in group mcp-payroll.',
    );
    expect(problem(states.granted)).toBeNull();
    // An oauth server not connected yet: the Connect button, and the words say it is once.
    expect(remedy(states.needs_connect)).toBe('connect');
    expect(problem(states.needs_connect)).toContain('Connect once in your browser');
  });
});
