// Full-screen layers (ringing, incoming call, the call itself) are modal:
// while one is up, the app behind it and any layer under it are inert, focus
// moves into the top one, and it returns where it was when the last closes.
import { useEffect } from 'preact/hooks';

const stack = [];
let returnFocus = null;

function apply() {
  const top = stack[stack.length - 1];
  for (const sel of ['.shell', '.skip', '.conn-banner']) {
    const el = document.querySelector(sel);
    if (el) el.inert = stack.length > 0;
  }
  for (const el of stack) el.inert = el !== top;
}

/**
 * Makes the element in `ref` a modal layer while mounted. `focus`: a selector
 * inside it to focus (else the layer itself).
 */
export function useModalLayer(ref, focus) {
  useEffect(() => {
    const el = ref.current;
    if (!el) return undefined;
    if (stack.length === 0) returnFocus = document.activeElement;
    stack.push(el);
    apply();
    const target = (focus && el.querySelector(focus)) || el;
    // After paint, so the browser scrolls nothing and screen readers catch it.
    requestAnimationFrame(() => target.focus?.());
    return () => {
      const i = stack.indexOf(el);
      if (i >= 0) stack.splice(i, 1);
      apply();
      const top = stack[stack.length - 1];
      if (top) (top.querySelector('[data-autofocus]') || top).focus?.();
      else if (returnFocus && document.contains(returnFocus)) returnFocus.focus?.();
      else document.getElementById('main')?.focus?.();
    };
  }, []);
}
