// Renders a chat template with @huggingface/jinja (installed by `npm ci --prefix tests/jinja`).
// Reads {template, messages, bos_token, eos_token, add_generation_prompt} as JSON on stdin and
// writes the rendered text to stdout. Exits 77 when the package is not installed.
let Template;
try {
  ({ Template } = await import("@huggingface/jinja"));
} catch {
  console.error("SKIP: @huggingface/jinja is not installed (npm ci --prefix tests/jinja)");
  process.exit(77);
}
let input = "";
for await (const chunk of process.stdin) input += chunk;
const { template, ...context } = JSON.parse(input);
process.stdout.write(new Template(template).render(context));
