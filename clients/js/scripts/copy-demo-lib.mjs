// Copies the built library next to the demo page: `natter --demo` embeds demo/ in the binary, so the copy is
// committed, and CI checks that it is what a build gives.
import { copyFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const root = join(import.meta.dirname, "..");
for (const file of readdirSync(join(root, "dist")).filter((name) => name.endsWith(".js"))) {
  copyFileSync(join(root, "dist", file), join(root, "demo", "lib", file));
}
