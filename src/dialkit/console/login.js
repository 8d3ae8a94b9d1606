// The login box: asks for the API key when a call is refused (401); the key is kept for this
// browser session only.
import { setKey } from "./api.js";

let pending = null;

export function askForKey(reason) {
  if (pending) return pending;
  const dialog = document.getElementById("login");
  const form = dialog.querySelector("form");
  const input = dialog.querySelector("#login-key");
  const message = dialog.querySelector("#login-reason");
  message.textContent = reason ? `The server said: ${reason}` : "";
  input.value = "";
  pending = new Promise((resolve) => {
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      pending = null;
      resolve(ok);
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const key = input.value.trim();
      if (!key) { message.textContent = "Enter a key."; input.focus(); return; }
      setKey(key);
      done(true);
    };
    const onCancel = () => done(false);
    form.addEventListener("submit", onSubmit);
    dialog.addEventListener("cancel", onCancel);
    dialog.querySelector("#login-cancel").onclick = () => done(false);
    dialog.showModal();
    input.focus();
  });
  return pending;
}
