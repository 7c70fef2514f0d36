// The one module that talks to Tauri: commands to the host and the status event from it.
import { invoke } from '@tauri-apps/api/core';
import { listen, type UnlistenFn } from '@tauri-apps/api/event';
import { getCurrentWindow } from '@tauri-apps/api/window';
import type { CommandError, Snapshot } from './types';

export const STATUS_EVENT = 'lanyard://status';

export const api = {
  snapshot: (): Promise<Snapshot> => invoke('snapshot'),
  signIn: (): Promise<void> => invoke('sign_in'),
  signOut: (): Promise<void> => invoke('sign_out'),
  refreshAll: (): Promise<void> => invoke('refresh_all'),
  refreshServer: (server: string): Promise<void> => invoke('refresh_server', { server }),
  /** Connects an `oauth` server: the browser opens once for its own sign-in. */
  connectServer: (server: string): Promise<void> => invoke('connect_server', { server }),
  openSupport: (): Promise<void> => invoke('open_support'),
  setAutostart: (enabled: boolean): Promise<void> => invoke('set_autostart', { enabled }),
  /** Closes the window for real: the webview is freed, Lanyard stays in the tray. */
  closeWindow: (): Promise<void> => getCurrentWindow().close(),
  /**
   * Tells the host the first live status is on screen (it logs window open -> first paint), with
   * when the page started loading and when the status arrived (Unix ms), for the breakdown.
   */
  painted: (statusAt?: number): Promise<void> =>
    invoke('window_painted', { navigationStart: performance.timeOrigin, statusAt: statusAt ?? null }),
  /** The snapshot the host put into the page before it loaded, if it had one (no round trip). */
  injected: (): Snapshot | null =>
    (globalThis as { __LANYARD_SNAPSHOT__?: Snapshot }).__LANYARD_SNAPSHOT__ ?? null,
  onStatus: (handler: (snapshot: Snapshot) => void): Promise<UnlistenFn> =>
    listen<Snapshot>(STATUS_EVENT, (event) => handler(event.payload)),
};

export type Api = typeof api;

/** The sentence to show for a rejected command. */
export function errorMessage(error: unknown): string {
  if (error && typeof error === 'object' && 'message' in error) {
    return String((error as CommandError).message);
  }
  if (typeof error === 'string') return error;
  return 'Something went wrong';
}
