// GitHub push → chat: one line of text per push, in the `{ "text": ... }` shape Slack, Mattermost
// and Google Chat incoming webhooks take, listing up to five commits.
function transform(event) {
  if (event.type !== "push") {
    return null;
  }
  const push = event.body;
  const branch = push.ref.replace(/^refs\/heads\//, "");
  const commits = push.commits || [];
  const shown = commits.slice(0, 5).map(
    (c) => "• " + c.id.slice(0, 7) + " " + c.message.split("\n")[0] + " (" + c.author.name + ")"
  );
  if (commits.length > shown.length) {
    shown.push("… and " + (commits.length - shown.length) + " more");
  }
  const noun = commits.length === 1 ? "commit" : "commits";
  const head =
    push.pusher.name + " pushed " + commits.length + " " + noun + " to " +
    push.repository.full_name + " " + branch + ": " + push.compare;
  return { body: { text: [head].concat(shown).join("\n") } };
}
