// Snapshots as the host sends them, for the UI tests.
import type { ServerState, ServerStatus, Snapshot, Status } from '../src/lib/types';

export const NOW = 1_800_000_000;

export function server(id: string, state: ServerState, extra: Partial<ServerStatus> = {}): ServerStatus {
  return {
    id,
    display_name: id[0].toUpperCase() + id.slice(1),
    url: `http://127.0.0.1:4000/${id}/mcp`,
    mode: 'enterprise-managed',
    state,
    last_refresh: null,
    authorization_server: null,
    ...extra,
  };
}

export const granted = (expiresIn = 300, scopes = ['docs.read']): ServerState => ({
  state: 'granted',
  expires_at: NOW + expiresIn,
  scopes,
  refresh_at: NOW + expiresIn * 0.75,
});

export function snapshot(status: Status | null, over: Partial<Snapshot> = {}): Snapshot {
  return {
    health: 'all_good',
    headline: 'All 2 servers ready',
    now: NOW,
    status,
    policy: { source: '/etc/lanyard/policy.json', support_url: 'https://it.example.com/help', problems: [] },
    autostart: { enabled: true, locked: false },
    agent: { state: 'connected', pid: 4242, version: '0.1.0' },
    ...over,
  };
}

export function status(idp: Status['idp'], servers: ServerStatus[]): Status {
  return { idp, servers, keychain: { state: 'available' }, updated_at: NOW };
}

export const alice: Status['idp'] = {
  state: 'signed_in',
  subject: 'alice',
  email: 'alice@example.com',
  id_token_expires_at: NOW + 3600,
  refresh_error: null,
};
