import { describe, expect, it } from 'vitest';
import { ago, clockOffset, countdown, inAbout } from '../src/lib/time';

describe('countdown', () => {
  it('shows minutes:seconds under an hour, padded so the width stays put', () => {
    expect(countdown(1000 + 299, 1000)).toBe('4:59');
    expect(countdown(1000 + 65, 1000)).toBe('1:05');
    expect(countdown(1000 + 9, 1000)).toBe('0:09');
  });
  it('shows hours and minutes above an hour, days above two days', () => {
    expect(countdown(3600 + 125, 0)).toBe('1 h 02 min');
    expect(countdown(3 * 86400, 0)).toBe('3 days');
  });
  it('says expired at and after the moment', () => {
    expect(countdown(1000, 1000)).toBe('expired');
    expect(countdown(1000, 2000)).toBe('expired');
  });
});

describe('ago and inAbout', () => {
  it('rounds to what a person would say', () => {
    expect(ago(1000, 1010)).toBe('just now');
    expect(ago(1000, 1000 + 150)).toBe('3 min ago');
    expect(ago(0, 7200)).toBe('2 h ago');
    expect(ago(0, 86400)).toBe('yesterday');
    expect(ago(0, 4 * 86400)).toBe('4 days ago');
    expect(ago(2000, 1000)).toBe('just now');
  });
  it('counts down to a retry', () => {
    expect(inAbout(1012, 1000)).toBe('in 12 s');
    expect(inAbout(1000 + 180, 1000)).toBe('in 3 min');
    expect(inAbout(999, 1000)).toBe('now');
  });
});

describe('clockOffset', () => {
  it('is the host clock minus the page clock, in seconds', () => {
    expect(clockOffset(1000, 990_000)).toBe(10);
    expect(clockOffset(1000, 1_000_500)).toBe(-0.5);
  });
});
