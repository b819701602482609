// Moving between views with the history API, so the back button and shared links work.

let renderer = async () => {};

export function setRenderer(render) {
  renderer = render;
}

export function navigate(href) {
  history.pushState(null, "", href);
  return renderer().then(() => document.getElementById("main").focus({ preventScroll: true }));
}
