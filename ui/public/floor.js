// The first-paint floor: reports its second frame as the status window does, with no status.
requestAnimationFrame(() =>
  requestAnimationFrame(() =>
    window.__TAURI_INTERNALS__.invoke('window_painted', {
      navigationStart: performance.timeOrigin,
      statusAt: null,
    }),
  ),
);
