import { render, screen, waitFor } from '@testing-library/svelte';
import userEvent from '@testing-library/user-event';
import { afterEach, describe, expect, it, vi } from 'vitest';
import App from '../src/App.svelte';
import type { Api } from '../src/lib/api';
import type { Snapshot, Status } from '../src/lib/types';
import { NOW, alice, granted, server, snapshot, status } from './fixtures';

/** An api that answers from a snapshot and lets the test push status events. */
function fakeApi(first: Snapshot, over: Partial<Api> = {}) {
  let push: (s: Snapshot) => void = () => {};
  const api: Api = {
    snapshot: vi.fn(async () => first),
    signIn: vi.fn(async () => {}),
    signOut: vi.fn(async () => {}),
    refreshAll: vi.fn(async () => {}),
    refreshServer: vi.fn(async () => {}),
    connectServer: vi.fn(async () => {}),
    openSupport: vi.fn(async () => {}),
    setAutostart: vi.fn(async () => {}),
    closeWindow: vi.fn(async () => {}),
    painted: vi.fn(async () => {}),
    injected: vi.fn(() => null),
    onStatus: vi.fn(async (handler) => {
      push = handler;
      return () => {};
    }),
    ...over,
  };
  return { api, push: (s: Snapshot) => push(s) };
}

afterEach(() => vi.useRealTimers());

describe('App', () => {
  it('paints the snapshot the host injected before the page loaded, without waiting for a reply', async () => {
    const signedOut = snapshot(status({ state: 'signed_out' }, [server('docs', { state: 'not_signed_in' })]), {
      health: 'signed_out',
      headline: 'Signed out',
    });
    // The command never answers: only the injected snapshot can put the headline on screen.
    const { api } = fakeApi(signedOut, {
      snapshot: vi.fn(() => new Promise<Snapshot>(() => {})),
      injected: vi.fn(() => signedOut),
    });
    render(App, { api });
    expect(await screen.findByRole('button', { name: 'Sign in' })).toBeTruthy();
    expect(screen.getByTestId('headline').textContent).toBe('Signed out');
    expect(api.snapshot).toHaveBeenCalledOnce();
    await waitFor(() => expect(api.painted).toHaveBeenCalledTimes(1));
  });

  it('starts signed out with a Sign in button, then shows the account after the status event', async () => {
    const signedOut = snapshot(status({ state: 'signed_out' }, [server('docs', { state: 'not_signed_in' })]), {
      health: 'signed_out',
      headline: 'Signed out',
    });
    const { api, push } = fakeApi(signedOut);
    render(App, { api });
    await userEvent.click(await screen.findByRole('button', { name: 'Sign in' }));
    expect(api.signIn).toHaveBeenCalledOnce();
    push(snapshot(status(alice, [server('docs', granted())])));
    expect(await screen.findByTestId('user')).toHaveProperty('textContent', 'alice@example.com');
    expect(screen.getByTestId('headline').textContent).toBe('All 2 servers ready');
    expect(screen.queryByRole('button', { name: 'Sign in' })).toBeNull();
  });

  it('ticks countdowns every second from the host clock', async () => {
    vi.useFakeTimers({ now: (NOW + 1000) * 1000 });
    // The page clock is 1000 s ahead of the host: countdowns must follow the host.
    const { api } = fakeApi(snapshot(status(alice, [server('docs', granted(120))])));
    render(App, { api });
    await vi.advanceTimersByTimeAsync(0); // the snapshot promise resolves; no timer has fired
    expect(screen.getByTestId('countdown').textContent).toBe('2:00');
    await vi.advanceTimersByTimeAsync(3000);
    expect(screen.getByTestId('countdown').textContent).toBe('1:57');
  });

  it('shows the policy problems with their key paths when the settings are unusable', async () => {
    const bad = snapshot(null, {
      health: 'action_needed',
      headline: 'Settings from your organization are not usable',
      policy: {
        source: '/etc/lanyard/policy.json',
        support_url: null,
        problems: [{ key_path: 'servers[1].url', message: '"ftp://x" must use https' }],
      },
    });
    const { api } = fakeApi(bad);
    render(App, { api });
    expect(await screen.findByRole('heading', { name: "Your organization's settings can't be used" })).toBeTruthy();
    expect(screen.getByText('servers[1].url')).toBeTruthy();
    expect(screen.getByText(/must use https/)).toBeTruthy();
    expect(screen.queryByRole('button', { name: 'Contact IT' })).toBeNull();
  });

  it('shows a Misconfigured engine with its errors, and a rejected change as a notice', async () => {
    const misconfigured = status({ state: 'signed_out' }, []);
    misconfigured.policy = { state: 'misconfigured', errors: ['/etc/lanyard/policy.json: idp.issuer: must use https'] };
    const { api } = fakeApi(
      snapshot(misconfigured, {
        health: 'action_needed',
        policy: { source: '/etc/lanyard/policy.json', support_url: null, problems: [] },
      }),
    );
    const { unmount } = render(App, { api });
    expect(await screen.findByRole('heading', { name: "Your organization's settings can't be used" })).toBeTruthy();
    expect(screen.getByText(/idp.issuer: must use https/)).toBeTruthy();
    expect(screen.queryByRole('button', { name: 'Sign in' })).toBeNull();
    unmount();
    const rejected = status(alice, [server('docs', granted())]);
    rejected.policy = { state: 'change_rejected', errors: ['policy.json: servers[0].url: must use https'] };
    render(App, { api: fakeApi(snapshot(rejected)).api });
    expect((await screen.findByText(/previous settings stay in force/)).textContent).toBeTruthy();
    expect(screen.getByText(/servers\[0\].url/)).toBeTruthy();
    expect(screen.getByTestId('countdown')).toBeTruthy();
  });

  it('says it is reconnecting while the agent is away, calmly', async () => {
    const away = snapshot(null, {
      health: 'reconnecting',
      headline: 'Reconnecting to the Lanyard agent…',
      agent: { state: 'reconnecting', reason: 'the agent closed the connection' },
    });
    const { api } = fakeApi(away);
    render(App, { api });
    expect(
      await screen.findByRole('heading', { name: 'Reconnecting to the Lanyard agent…' }),
    ).toBeTruthy();
    expect(screen.queryByText(/settings can't be used/)).toBeNull();
  });

  it('closes the window on Escape', async () => {
    const { api } = fakeApi(snapshot(status(alice, [])));
    render(App, { api });
    await screen.findByTestId('user');
    await userEvent.keyboard('{Escape}');
    expect(api.closeWindow).toHaveBeenCalledOnce();
  });

  it('says so when no servers are configured', async () => {
    const { api } = fakeApi(snapshot(status(alice, [])));
    render(App, { api });
    expect(await screen.findByRole('heading', { name: 'No servers yet' })).toBeTruthy();
  });

  it('shows a failed command in words and keeps working', async () => {
    const { api } = fakeApi(snapshot(status(alice, [server('docs', granted())])), {
      refreshAll: vi.fn(async () => {
        throw { code: 'unavailable', message: 'Temporarily unavailable: HTTP 503 (retrying)' };
      }),
    });
    render(App, { api });
    await userEvent.click(await screen.findByRole('button', { name: 'Refresh all' }));
    expect((await screen.findByRole('alert')).textContent).toContain('Temporarily unavailable: HTTP 503');
    await userEvent.click(screen.getByRole('button', { name: 'Dismiss' }));
    await waitFor(() => expect(screen.queryByRole('alert')).toBeNull());
  });

  it('connects an oauth server from its card, and shows a refused connect in words', async () => {
    const wiki = server('wiki', { state: 'needs_connect' }, { mode: 'oauth' });
    const { api, push } = fakeApi(snapshot(status(alice, [server('docs', granted()), wiki])), {
      connectServer: vi
        .fn<(id: string) => Promise<void>>()
        .mockRejectedValueOnce({ code: 'connect_failed', message: 'Connecting wiki failed: the browser sign-in was cancelled' })
        .mockResolvedValueOnce(undefined),
    });
    render(App, { api });
    await userEvent.click(await screen.findByRole('button', { name: 'Connect' }));
    expect(api.connectServer).toHaveBeenCalledWith('wiki');
    expect((await screen.findByRole('alert')).textContent).toContain('browser sign-in was cancelled');
    await userEvent.click(screen.getByRole('button', { name: 'Connect' }));
    expect(api.connectServer).toHaveBeenCalledTimes(2);
    await waitFor(() => expect(screen.queryByRole('alert')).toBeNull());
    push(snapshot(status(alice, [server('docs', granted()), { ...wiki, state: granted() }])));
    await waitFor(() => expect(screen.queryByRole('button', { name: 'Connect' })).toBeNull());
  });

  it('toggles start at login, and not when the organization locked it', async () => {
    const { api } = fakeApi(snapshot(status(alice, [])));
    const { unmount } = render(App, { api });
    const toggle = await screen.findByRole('switch', { name: 'Start Lanyard when I log in' });
    expect(toggle.getAttribute('aria-checked')).toBe('true');
    await userEvent.click(toggle);
    expect(api.setAutostart).toHaveBeenCalledWith(false);
    unmount();
    const locked = fakeApi(snapshot(status(alice, []), { autostart: { enabled: true, locked: true } }));
    render(App, { api: locked.api });
    const lockedToggle = await screen.findByRole('switch');
    expect((lockedToggle as HTMLButtonElement).disabled).toBe(true);
    expect(screen.getAllByText('Set by your organization').length).toBeGreaterThan(1);
  });
  it('names the account a sign-in replaced, and says nothing when it was the same one', async () => {
    const switched = { ...alice, previous_subject: 'mallory' } as Status['idp'];
    const { api, push } = fakeApi(snapshot(status(switched, [])));
    render(App, { api });
    const notice = await screen.findByTestId('account-changed');
    expect(notice.textContent).toContain('Before this sign-in, mallory was signed in');
    push(snapshot(status(alice, [])));
    await waitFor(() => expect(screen.queryByTestId('account-changed')).toBeNull());
  });
});
