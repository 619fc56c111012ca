// Tones synthesised with WebAudio (no audio files): the callee's ringtone (a
// soft two-note chime, repeated) and the caller's ringback (425 Hz, 1 s on,
// 4 s off, the European tone the seed app's users know).
//
// Autoplay: an AudioContext made without a user gesture may start suspended.
// Then `blocked` is reported and the first click or key press on the page
// resumes it; the incoming-call screen says so.

let ctx = null;
let timer = null;
let gain = null;
let onUnblock = null;

function context() {
  const AC = window.AudioContext || window.webkitAudioContext;
  if (!AC) return null;
  if (!ctx || ctx.state === 'closed') ctx = new AC();
  return ctx;
}

function note(c, out, freq, at, len, level) {
  const o = c.createOscillator();
  const g = c.createGain();
  o.type = 'sine';
  o.frequency.value = freq;
  g.gain.setValueAtTime(0, at);
  g.gain.linearRampToValueAtTime(level, at + 0.02);
  g.gain.exponentialRampToValueAtTime(0.0001, at + len);
  o.connect(g).connect(out);
  o.start(at);
  o.stop(at + len + 0.05);
}

const PATTERNS = {
  // Two chimes (E5 then B5, each with a soft octave), twice, every 3 s.
  ring: {
    every: 3000,
    play(c, out, t0) {
      for (const [i, f] of [659.25, 987.77, 659.25, 987.77].entries()) {
        const at = t0 + i * 0.22 + (i > 1 ? 0.25 : 0);
        note(c, out, f, at, 0.5, 0.22);
        note(c, out, f * 2, at, 0.3, 0.05);
      }
    },
  },
  ringback: {
    every: 5000,
    play(c, out, t0) {
      const o = c.createOscillator();
      const g = c.createGain();
      o.frequency.value = 425;
      g.gain.setValueAtTime(0, t0);
      g.gain.linearRampToValueAtTime(0.08, t0 + 0.03);
      g.gain.setValueAtTime(0.08, t0 + 1.45);
      g.gain.linearRampToValueAtTime(0, t0 + 1.5);
      o.connect(g).connect(out);
      o.start(t0);
      o.stop(t0 + 1.55);
    },
  },
};

/**
 * Starts a tone ('ring' | 'ringback'), replacing any other. `onBlocked(bool)`
 * tells whether the browser holds the sound back until a user gesture.
 */
export function startTone(kind, onBlocked = () => {}) {
  stopTone();
  const c = context();
  if (!c) return;
  const pattern = PATTERNS[kind];
  gain = c.createGain();
  gain.gain.value = 1;
  gain.connect(c.destination);
  const out = gain;
  const tick = () => {
    if (c.state === 'running') pattern.play(c, out, c.currentTime + 0.05);
  };
  const resume = () => {
    c.resume().then(() => {
      if (c.state === 'running') {
        onBlocked(false);
        removeUnblock();
      }
    }, () => {});
  };
  if (c.state !== 'running') {
    onBlocked(true);
    resume();
    onUnblock = resume;
    window.addEventListener('pointerdown', onUnblock, true);
    window.addEventListener('keydown', onUnblock, true);
  }
  // The first tick waits a moment for resume(); then the pattern repeats.
  setTimeout(tick, 60);
  timer = setInterval(tick, pattern.every);
  if (kind === 'ring' && navigator.vibrate) {
    try {
      navigator.vibrate([400, 200, 400]);
    } catch {
      /* not allowed without a gesture */
    }
  }
}

function removeUnblock() {
  if (onUnblock) {
    window.removeEventListener('pointerdown', onUnblock, true);
    window.removeEventListener('keydown', onUnblock, true);
    onUnblock = null;
  }
}

/** Stops whatever tone plays (at once: the sound already scheduled is cut). */
export function stopTone() {
  if (timer) clearInterval(timer);
  timer = null;
  removeUnblock();
  if (gain) {
    try {
      gain.disconnect();
    } catch {
      /* already */
    }
    gain = null;
  }
  if (navigator.vibrate) {
    try {
      navigator.vibrate(0);
    } catch {
      /* ignore */
    }
  }
}

/** A short two-note "call ended" sign. */
export function endTone() {
  const c = context();
  if (!c || c.state !== 'running') return;
  const t0 = c.currentTime + 0.02;
  note(c, c.destination, 523.25, t0, 0.25, 0.12);
  note(c, c.destination, 392, t0 + 0.2, 0.35, 0.12);
}

/** Whether a tone is playing (for tests of the page's own state, not used by the UI). */
export const toneActive = () => timer !== null;
