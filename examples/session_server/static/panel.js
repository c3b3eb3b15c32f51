// Refreshes the store's numbers on the page from /stats.json every two seconds.
"use strict";
const fields = ["entries", "hits", "misses", "disk_bytes"];
async function refresh() {
  try {
    const response = await fetch("/stats.json", { credentials: "same-origin" });
    if (!response.ok) return;
    const stats = await response.json();
    for (const field of fields) {
      const cell = document.getElementById(field);
      if (cell) cell.textContent = stats[field] ?? "—";
    }
  } catch (_) {
    // The server is restarting: keep the last numbers.
  }
}
refresh();
setInterval(refresh, 2000);
