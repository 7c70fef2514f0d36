// Countdowns and "x ago" in words; pure functions of (moment, now) in Unix seconds.

const pad = (n: number) => String(n).padStart(2, '0');

/** "4:59", "1 h 02 min", or "expired". */
export function countdown(until: number, now: number): string {
  const left = Math.floor(until - now);
  if (left <= 0) return 'expired';
  if (left < 3600) return `${Math.floor(left / 60)}:${pad(left % 60)}`;
  const hours = Math.floor(left / 3600);
  if (hours >= 48) return `${Math.floor(hours / 24)} days`;
  return `${hours} h ${pad(Math.floor((left % 3600) / 60))} min`;
}

/** "just now", "3 min ago", "2 h ago", "yesterday", "4 days ago". */
export function ago(at: number, now: number): string {
  const secs = Math.max(0, Math.floor(now - at));
  if (secs < 45) return 'just now';
  if (secs < 3600) return `${Math.max(1, Math.round(secs / 60))} min ago`;
  if (secs < 86400) return `${Math.round(secs / 3600)} h ago`;
  const days = Math.round(secs / 86400);
  return days === 1 ? 'yesterday' : `${days} days ago`;
}

/** "in 12 s" / "in 3 min" / "now": when a retry happens. */
export function inAbout(at: number, now: number): string {
  const secs = Math.floor(at - now);
  if (secs <= 0) return 'now';
  if (secs < 60) return `in ${secs} s`;
  return `in ${Math.round(secs / 60)} min`;
}

/** A wall-clock time for a person: "14:05". */
export function clockTime(at: number): string {
  const d = new Date(at * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/**
 * Keeps countdowns honest when the page's clock and the host's differ: the offset to add to the
 * page's clock, measured when a snapshot arrives.
 */
export function clockOffset(hostNow: number, pageNowMs: number): number {
  return hostNow - pageNowMs / 1000;
}
