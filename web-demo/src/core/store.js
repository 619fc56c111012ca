// A tiny reactive store: one object, replaced on every change, and a hook
// that re-renders a component when the part it reads changes.
import { useEffect, useState } from 'preact/hooks';

export function createStore(initial) {
  let state = initial;
  const subs = new Set();
  return {
    get: () => state,
    /** Merges `patch` (an object, or a function of the state returning one). */
    set(patch) {
      const next = typeof patch === 'function' ? patch(state) : patch;
      state = { ...state, ...next };
      for (const f of [...subs]) f(state);
    },
    subscribe(f) {
      subs.add(f);
      return () => subs.delete(f);
    },
  };
}

/** The store's value (or `select(value)`), kept current. */
export function useStore(store, select = (s) => s) {
  const [value, setValue] = useState(() => select(store.get()));
  useEffect(() => {
    const update = (s) => setValue(() => select(s));
    update(store.get());
    return store.subscribe(update);
  }, [store]);
  return value;
}
