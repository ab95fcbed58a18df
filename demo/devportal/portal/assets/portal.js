// Marks the links that leave the bundle, so offline readers know they will not open.
document.querySelectorAll('a[href^="http"]').forEach((link) => {
  link.title = "online only";
  link.classList.add("offline-note");
});
