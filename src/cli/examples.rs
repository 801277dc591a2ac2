//! The `Examples:` section of each command's help (`after_help`), kept
//! together so they read as one set; `eval`, `pin`, `unpin` and `gateway`
//! keep theirs beside their longer help text.

pub const VALIDATE: &str = "\
Examples:
  sluice validate                                  the work tree, every finding at once
  sluice validate --rev origin/main -o json        a commit, for CI
  sluice validate --allow-env 'production=PROD_*' --allow-url 'production=https://gw-*.internal:8443'

Exit codes: 0 valid, 1 findings, 2 usage or repository error.";

pub const RENDER: &str = "\
Examples:
  sluice render production                         every gateway of production, as YAML
  sluice render --env production --gateway prod-eu-1 -o json
  sluice render -o table                           one line per gateway: its version
  sluice render production -o wide                 and its packs and policies
  sluice render staging --rev HEAD -o native       what each driver writes (LiteLLM's config.yaml)";

pub const SCHEMA: &str = "\
Examples:
  sluice schema --out .schemas                     one file per schema, for an editor
  sluice schema | jq 'keys'";

pub const INIT: &str = "\
Examples:
  sluice init policy-repo                          a new repository with the example, committed on main
  sluice init                                      the same in the working directory";

pub const RUN: &str = "\
Examples:
  sluice run --repo . --allow-env 'production=PROD_*'
  sluice run --repo https://git.example.com/policy.git --branch main --git-token-env GIT_TOKEN \\
    --interval 1m --listen 0.0.0.0:7878 --tokens-file /etc/sluice/tokens
  SLUICE_LOG=debug sluice run --log-format json

Without API tokens the API is open (refused beyond loopback unless --allow-open-api);
without SLUICE_WEBHOOK_SECRET the git webhook is off. Both are said at start.";

pub const SYNC: &str = "\
Examples:
  sluice sync                                      one pass over every environment
  sluice sync production -o json                   one environment, the pass as JSON
  sluice sync --env staging --branch release
  sluice sync --server http://127.0.0.1:7878 --env production    a running server's pass, waited for
  sluice sync --server http://127.0.0.1:7878 --wait-timeout 2m -o json
  sluice sync --server http://127.0.0.1:7878 --no-wait             only ask for it

Exit codes: 0 every gateway converged, 1 some did not (or the revision is invalid),
2 Sluice could not run (an unknown environment; with --server, also --wait-timeout passed).";

pub const STATUS: &str = "\
Examples:
  sluice status                                    every environment × gateway
  sluice status production -o json
  sluice status --env production --server http://127.0.0.1:7878
  sluice status --cluster sluice-system            what `sluice controller` records
  sluice status --watch                            the table again whenever it changes, until Ctrl-C
  sluice status -w --server http://127.0.0.1:7878 | tee status.log

Exit codes: 0 every gateway in sync, 1 not (with --watch --timeout: as last read).";

pub const WAIT: &str = "\
Examples:
  sluice wait production --for in-sync --timeout 5m
  sluice wait --env staging --server http://127.0.0.1:7878 -o json
  sluice wait development --timeout 1m             after starting `sluice run`: its first pass

Exit codes: 0 the condition is met, 1 the timeout passed first (what is not met is printed),
2 it cannot run (an unknown environment, an unreachable server).";

pub const HISTORY: &str = "\
Examples:
  sluice history production                        the last 20 apply attempts
  sluice history --env production --gateway prod-eu-1 --limit 50
  sluice history production --drift                drift episodes: onset, resolution
  sluice history eval --evals -o json              eval suite runs
  sluice history production --server http://127.0.0.1:7878";

pub const PLAN: &str = "\
Examples:
  sluice plan --base origin/main --head HEAD
  sluice plan --base \"$BASE_SHA\" --head \"$HEAD_SHA\" -o markdown > plan.md
  sluice plan --base origin/main --head HEAD --approved alice

Exit codes: 0 fine, 1 a production environment weakened without approval (or an invalid revision).";

pub const DRIFT: &str = "\
Examples:
  sluice drift                                     every gateway against what Sluice verified
  sluice drift production -o json
  sluice drift --env staging --rev HEAD

Exit codes: 0 no drift, 1 drift or an unreachable gateway, 2 usage error.";

pub const DIFF: &str = "\
Examples:
  sluice diff                                      the work tree against every gateway, before committing
  sluice diff production                           one environment
  sluice diff --env staging --rev origin/main      a commit instead of the work tree
  sluice diff -o json | jq '.[] | select(.result == \"differs\") | .changes'

Exit codes: 0 no differences, 1 differences, 2 an error (an invalid work tree or revision,
a gateway that cannot be read, an unknown environment).";

pub const PROMOTE: &str = "\
Examples:
  sluice promote staging production                a branch with staging's packs in production
  sluice promote staging production --packs baseline,models --push
  sluice promote development production --force --reason 'incident 42 hotfix'";

pub const ROLLBACK: &str = "\
Examples:
  sluice rollback production                       back to the version before the current one
  sluice rollback --env production --steps 2
  sluice rollback production --to 3f2a9c1b --pin --reason 'incident 42'
  sluice rollback production --push";

pub const CONTROLLER: &str = "\
Examples:
  sluice controller --leader-elect --tokens-file /etc/sluice/tokens
  sluice controller --watch-namespace sluice-system --gateway-namespace ai-gateway
  sluice controller --shard sluice.dev/shard=eu --lease-name sluice-eu";

pub const CRDS: &str = "\
Examples:
  sluice crds | kubectl apply -f -
  sluice crds --out crds/";

pub const COMPLETION: &str = "\
Examples:
  source <(sluice completion bash)                 bash, this shell
  sluice completion bash > /etc/bash_completion.d/sluice
  sluice completion zsh > \"${fpath[1]}/_sluice\"
  sluice completion fish > ~/.config/fish/completions/sluice.fish
  sluice completion powershell | Out-String | Invoke-Expression";

pub const MAN: &str = "\
Examples:
  sluice man --out /usr/local/share/man/man1       sluice.1 and sluice-COMMAND.1 for each command
  sluice man --out man && man -l man/sluice-diff.1";

pub const VERSION: &str = "\
Examples:
  sluice version
  sluice version -o json
  sluice --version                                 the same on one line
  sluice version --server http://127.0.0.1:7878    the server's version too";
