// Dark or light: the system's choice until the person picks one, then theirs, kept.
const THEME_KEY = "chatproxy.theme";

function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
}

export function restoreTheme() {
  applyTheme(localStorage.getItem(THEME_KEY));
}

export function toggleTheme() {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark"
    : matchMedia("(prefers-color-scheme: dark)").matches;
  const theme = dark ? "light" : "dark";
  localStorage.setItem(THEME_KEY, theme);
  applyTheme(theme);
}
