# The official openai npm package against Sluice: starts the mock LLM and a gateway with an
# ai-proxy route for /v1/*, runs t/clients/openai-client.mjs (TAP) with SLUICE_BASE_URL, and
# checks on the mock's side what the SDK's requests became (no client key forwarded, an
# aborted stream cancelled upstream). Skips when node or node_modules/openai is missing
# (`make test` installs it with npm; or: cd t/clients && npm install).
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $dir = repo_root() . '/t/clients';
my $node = (grep { -x "$_/node" } split /:/, $ENV{PATH} // '')[0];
plan skip_all => 'node not found in PATH' if !$node;
plan skip_all => "openai package not installed (cd t/clients && npm install)"
    if !-f "$dir/node_modules/openai/package.json";

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'sdk', uri => '/v1/*',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(
          options => { model => undef },
          override => { endpoint => 'http://127.0.0.1:' . $llm->port }) } },
]);

local $ENV{SLUICE_BASE_URL} = $sluice->url('/v1');
my @out = `cd '$dir' && '$node/node' openai-client.mjs 2>&1`;
my $rc = $? >> 8;

my ($planned, $seen) = (undef, 0);
for my $line (@out) {
    chomp $line;
    if ($line =~ /^(not )?ok \d+ - (.*)$/) {
        $seen++;
        ok !$1, "node: $2";
    }
    elsif ($line =~ /^1\.\.(\d+)/) {
        $planned = $1;
    }
    else {
        diag $line;
    }
}
ok defined $planned, 'the script ran to the end' or diag join "\n", @out;
is $seen, $planned, 'every planned test reported' if defined $planned;
is $rc, 0, 'node exited 0';

subtest 'what the provider received' => sub {
    my $reqs = $llm->requests;
    cmp_ok scalar @$reqs, '>=', 7, 'the SDK\'s requests reached the mock';
    ok !grep({ ($_->{headers}{authorization} // '') =~ /sk-client-sdk-key/ } @$reqs),
        'the SDK\'s API key was never forwarded';
    ok !grep({ ($_->{headers}{authorization} // '') ne 'Bearer test-key' } @$reqs),
        'every request carried the route\'s key';
    my ($abort) = grep { ($_->{json}{model} // '') eq 'abort-model' } @$reqs;
    ok $abort, 'the aborted stream was sent';
    my $o = wait_for(sub {
        my ($r) = grep { $abort && $_->{id} == $abort->{id} } @{ $llm->responses };
        $r;
    }, 3);
    is $o && $o->{outcome}, 'client_closed', 'the aborted stream was cancelled upstream';
    cmp_ok $o ? $o->{events} : 999, '<', 50, 'long before its 200 events';
};

done_testing;
