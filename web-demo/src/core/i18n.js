// Strings in the browser's language: Spanish or English (the default).
// Each feature registers its own table with `addStrings({en: {...}, es: {...}})`.
const tables = { en: {}, es: {} };

function pick() {
  const forced = new URLSearchParams(location.search).get('lang');
  const langs = forced ? [forced] : navigator.languages?.length ? navigator.languages : [navigator.language || 'en'];
  for (const l of langs) {
    const base = String(l).toLowerCase().split('-')[0];
    if (base === 'es' || base === 'en') return base;
  }
  return 'en';
}

export const lang = pick();
document.documentElement.lang = lang;

export function addStrings(t) {
  for (const l of Object.keys(tables)) Object.assign(tables[l], t[l] || {});
}

/** `t('chat.unread', {n: 3})`: the string with `{n}` filled in; the key itself when missing. */
export function t(key, vars) {
  let s = tables[lang][key] ?? tables.en[key] ?? key;
  if (vars) for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

/** Plural: `tn('chat.members', n)` reads `chat.members.one` or `chat.members.other`. */
export function tn(key, n, vars) {
  const rule = new Intl.PluralRules(lang).select(n);
  return t(`${key}.${rule === 'one' ? 'one' : 'other'}`, { n, ...vars });
}

const timeFmt = new Intl.DateTimeFormat(lang, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(lang, { day: 'numeric', month: 'short' });
const fullFmt = new Intl.DateTimeFormat(lang, { dateStyle: 'medium', timeStyle: 'short' });

/** Time of day for today, else a short date. `at`: ISO string or ms. */
export function when(at) {
  const d = new Date(at);
  if (Number.isNaN(d.getTime())) return '';
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dayFmt.format(d);
}
export const fullDate = (at) => {
  const d = new Date(at);
  return Number.isNaN(d.getTime()) ? '' : fullFmt.format(d);
};
