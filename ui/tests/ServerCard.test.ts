import { render, screen } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { describe, expect, it, vi } from 'vitest';
import ServerCard from '../src/components/ServerCard.svelte';
import { NOW, granted, server } from './fixtures';

function setup(props: Record<string, unknown>) {
  const handlers = { onRetry: vi.fn(), onSignIn: vi.fn(), onContact: vi.fn(), onConnect: vi.fn() };
  const view = render(ServerCard, { now: NOW, supportUrl: 'https://it.example.com', ...handlers, ...props });
  return { ...handlers, ...view };
}

describe('ServerCard', () => {
  it('shows a granted server with its scopes, a live countdown and the last refresh', async () => {
    const { rerender } = setup({
      server: server('docs', granted(300, ['docs.read', 'docs.write']), { last_refresh: NOW - 120 }),
    });
    expect(screen.getByRole('heading', { name: 'Docs' })).toBeTruthy();
    expect(screen.getByTestId('badge').textContent).toContain('Granted');
    expect(screen.getByText('http://127.0.0.1:4000/docs/mcp')).toBeTruthy();
    expect(screen.getByRole('list', { name: 'Granted scopes' }).textContent).toContain('docs.write');
    expect(screen.getByTestId('countdown').textContent).toBe('5:00');
    expect(screen.getByText('2 min ago')).toBeTruthy();
    await rerender({ now: NOW + 1 });
    expect(screen.getByTestId('countdown').textContent).toBe('4:59');
    expect(screen.queryByRole('button')).toBeNull();
  });

  it('shows a server ready on first use calmly, with its usage quietly', () => {
    setup({
      server: server('docs', { state: 'ready_on_first_use', reason: 'unused' }, {
        usage: { id_jags: 12, jwt_bearer_grants: 12, client_requests: 1, window_days: 30 },
      }),
    });
    expect(screen.getByTestId('badge').textContent).toContain('Ready on first use');
    expect(screen.getByTestId('ready-on-first-use').textContent).toContain('next request');
    expect(screen.queryByRole('status')).toBeNull();
    expect(screen.queryByRole('button')).toBeNull();
    expect(screen.getByTestId('usage').textContent).toContain('Last 30 days: 12 tokens minted, 1 request served');
  });

  it('says a server near its budget still answers its apps', () => {
    setup({ server: server('docs', { state: 'ready_on_first_use', reason: 'near_budget' }) });
    expect(screen.getByTestId('ready-on-first-use').textContent).toContain('still get a token');
    expect(screen.queryByTestId('usage')).toBeNull();
  });

  it('offers Contact IT for a denied server only when the policy has a support page', async () => {
    const denied = server('payroll', { state: 'denied', code: 'access_denied', description: null });
    const { onContact, unmount } = setup({ server: denied });
    expect(screen.getByText(/Blocked by your organization/)).toBeTruthy();
    await userEvent.click(screen.getByRole('button', { name: 'Contact IT' }));
    expect(onContact).toHaveBeenCalledOnce();
    unmount();
    setup({ server: denied, supportUrl: null });
    expect(screen.queryByRole('button', { name: 'Contact IT' })).toBeNull();
  });

  it('offers Connect for an oauth server not connected yet, by id, and disables it while busy', async () => {
    const wiki = server('wiki', { state: 'needs_connect' }, {
      mode: 'oauth',
      usage: { id_jags: 0, jwt_bearer_grants: 0, client_requests: 3, window_days: 30 },
    });
    const { onConnect, unmount } = setup({ server: wiki });
    // Its tokens come from its own refresh token: no ID-JAG count to show.
    expect(screen.getByTestId('usage').textContent).toContain('Last 30 days: 3 requests served');
    expect(screen.getByTestId('badge').textContent).toContain('Not connected');
    expect(screen.getByRole('status').textContent).toContain('Connect once in your browser');
    await userEvent.click(screen.getByRole('button', { name: 'Connect' }));
    expect(onConnect).toHaveBeenCalledWith('wiki');
    unmount();
    setup({ server: wiki, busy: true });
    expect((screen.getByRole('button', { name: 'Connect' }) as HTMLButtonElement).disabled).toBe(true);
  });

  it('says where a connect under way waits, and does not offer a second one', () => {
    setup({ server: server('wiki', { state: 'needs_connect' }, { mode: 'oauth', connecting: true }) });
    expect(screen.getByRole('status').textContent).toContain('finish the sign-in in your browser');
    expect((screen.getByRole('button', { name: 'Connect' }) as HTMLButtonElement).disabled).toBe(true);
  });

  it('explains a failing server and retries it by id', async () => {
    const failing = server('tickets', { state: 'failing', error: 'HTTP 503', retry_at: NOW + 8, attempts: 2 });
    const { onRetry } = setup({ server: failing });
    expect(screen.getByTestId('badge').textContent).toContain('Retrying');
    expect(screen.getByRole('status').textContent).toContain('Next try in 8 s (attempt 2)');
    await userEvent.click(screen.getByRole('button', { name: 'Retry now' }));
    expect(onRetry).toHaveBeenCalledWith('tickets');
  });

  it('asks for a fresh sign-in on step-up and names the last user when the broker knows it', async () => {
    const { onSignIn, unmount } = setup({ server: server('docs', { state: 'step_up_required', max_age: 60 }) });
    await userEvent.click(screen.getByRole('button', { name: 'Sign in again' }));
    expect(onSignIn).toHaveBeenCalledOnce();
    unmount();
    setup({
      server: server('docs', granted(), {
        last_used: { at: NOW - 30, requester: { pid: 42, executable: '/usr/bin/claude' } },
      }),
    });
    expect(screen.getByText('claude, just now')).toBeTruthy();
  });

  it('says quietly where the client key lives, its full name on hover', () => {
    setup({
      server: server('docs', granted(), {
        client_key: { kind: 'tpm', name: 'PKCS#11 token "lanyard", key "client" (libtpm2_pkcs11.so)' },
      }),
    });
    const key = screen.getByTestId('client-key');
    expect(key.textContent).toBe('TPM');
    expect(key.getAttribute('title')).toContain('libtpm2_pkcs11.so');
  });

  it('says when a token is bound to this device, and only then', () => {
    const { unmount } = setup({ server: server('tickets', granted(), { dpop_bound: true }) });
    const bound = screen.getByTestId('dpop-bound');
    expect(bound.textContent).toBe('Bound to this device');
    expect(bound.getAttribute('title')).toContain('lanyard proxy');
    unmount();
    setup({ server: server('docs', granted()) });
    expect(screen.queryByTestId('dpop-bound')).toBeNull();
  });
});
