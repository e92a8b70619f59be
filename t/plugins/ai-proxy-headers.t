# ai-proxy headers. Upstream: the client's credentials (Authorization, Proxy-Authorization,
# Cookie, x-api-key, api-key, x-goog-api-key) never reach the provider, the route's auth.header
# and auth.query do, other client headers pass (a deliberate difference from APISIX, which
# forwards them all, PR #13422). Downstream: the provider's x-request-id,
# openai-processing-ms, x-ratelimit-* and retry-after reach the client (APISIX drops all but
# Content-Type), its cookies and account/CDN headers do not.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'chat', uri => '/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(
          auth => { header => { Authorization => 'Bearer sk-gateway', 'X-Org' => 'acme' },
                    query => { 'api-version' => '2024-06-01' } }) } },
    { id => 'query-only', uri => '/q/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf(
          auth => { header => undef, query => { key => 'gw-secret' } }) } },
]);

my $chat = { messages => [{ role => 'user', content => 'hi' }] };
my %client_creds = (
    'Authorization' => 'Bearer sk-client-secret',
    'Proxy-Authorization' => 'Basic Y2xpZW50OnNlY3JldA==',
    'Cookie' => 'session=client-cookie',
    'x-api-key' => 'client-x-api-key',
    'api-key' => 'client-azure-key',
    'x-goog-api-key' => 'client-google-key',
);

subtest 'client credentials stay at the gateway' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/v1/chat/completions', $chat, headers => {
        %client_creds, 'X-Trace' => 'trace-1', 'User-Agent' => 'my-app/1.0',
        'Accept-Encoding' => 'gzip, br' });
    is $r->{status}, 200, 'status';
    my $h = $llm->last_request->{headers};
    is $h->{authorization}, 'Bearer sk-gateway', 'Authorization is the route\'s';
    is $h->{'x-org'}, 'acme', 'other auth.header sent';
    for my $name (qw(proxy-authorization cookie x-api-key api-key x-goog-api-key)) {
        ok !exists $h->{$name}, "$name not sent";
    }
    my $all = join "\n", map { "$_: $h->{$_}" } sort keys %$h;
    unlike $all, qr/client-secret|client-cookie|client-x-api-key|client-azure|client-google|Y2xp/,
        'no client secret anywhere in the provider\'s headers';
    is $h->{'x-trace'}, 'trace-1', 'other client headers pass';
    is $h->{'user-agent'}, 'my-app/1.0', 'User-Agent passes';
    ok !exists $h->{'accept-encoding'} || $h->{'accept-encoding'} !~ /gzip|br/,
        'Accept-Encoding not passed (the body must reach the filters uncompressed)';
    is $h->{'content-type'}, 'application/json', 'Content-Type JSON';
    is $h->{host}, '127.0.0.1:' . $llm->port, 'Host is the provider\'s';
    is $llm->last_request->{args}{'api-version'}, '2024-06-01', 'auth.query sent';
};

subtest 'query-string auth: no Authorization at all unless the route sets one' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/q/v1/chat/completions', $chat,
                      headers => { Authorization => 'Bearer sk-client-secret' });
    is $r->{status}, 200, 'status';
    my $req = $llm->last_request;
    ok !exists $req->{headers}{authorization}, 'client Authorization not sent';
    is $req->{args}{key}, 'gw-secret', 'key in the query';
};

subtest 'credentials never appear in the logs' => sub {
    my $log = join '', map { encode_json($_) } @{ $sluice->wait_access_log(2) };
    $log .= $sluice->error_log;
    unlike $log, qr/sk-gateway|gw-secret|sk-client-secret|client-cookie/, 'no secret logged';
};

subtest 'provider headers passed back' => sub {
    my $r = post_json($sluice, '/v1/chat/completions', $chat);
    my $id = $llm->last_request->{id};
    is $r->{headers}{'x-request-id'}, "mock-$id", 'x-request-id';
    is $r->{headers}{'openai-processing-ms'}, '1', 'openai-processing-ms';
    is $r->{headers}{'x-ratelimit-limit-requests'}, '100', 'x-ratelimit-limit-requests';

    $r = post_json($sluice, '/v1/chat/completions', $chat, headers => { 'x-mock-status' => 429 });
    is $r->{status}, 429, 'status 429';
    is $r->{headers}{'retry-after'}, '1', 'retry-after';
    is $r->{headers}{'x-ratelimit-remaining-requests'}, '0', 'x-ratelimit-remaining-requests';

    for my $h (['x-ratelimit-reset-tokens', '6m0s'], ['anthropic-ratelimit-tokens-remaining', '99'],
               ['retry-after-ms', '250']) {
        $r = post_json($sluice, '/v1/chat/completions', $chat,
                       headers => { 'x-mock-header' => "$h->[0]: $h->[1]" });
        is $r->{headers}{$h->[0]}, $h->[1], "$h->[0] passed back";
    }

    $r = post_json($sluice, '/v1/chat/completions', { %$chat, stream => JSON::PP::true },
                   headers => { 'x-mock-header' => 'x-ratelimit-remaining-tokens: 42' });
    like $r->{headers}{'content-type'}, qr{^text/event-stream}, 'a stream';
    is $r->{headers}{'x-ratelimit-remaining-tokens'}, '42', 'passed back on streams too';
    ok $r->{headers}{'x-request-id'}, 'x-request-id on streams';
};

subtest 'provider cookies and account/CDN headers are not passed back' => sub {
    for my $h (['set-cookie', '__cf_bm=abc; path=/; domain=.openai.com'],
               ['openai-organization', 'org-secret'], ['openai-project', 'proj_1'],
               ['anthropic-organization-id', 'org-1'], ['cf-ray', '8a1b2c3d'],
               ['alt-svc', 'h3=":443"'], ['strict-transport-security', 'max-age=31536000'],
               ['x-envoy-upstream-service-time', '12']) {
        my $r = post_json($sluice, '/v1/chat/completions', $chat,
                          headers => { 'x-mock-header' => "$h->[0]: $h->[1]" });
        is $r->{status}, 200, "$h->[0]: status";
        ok !exists $r->{headers}{$h->[0]}, "$h->[0] dropped";
    }
    my $r = post_json($sluice, '/v1/chat/completions', $chat);
    is $r->{headers}{server}, 'sluice', 'Server is the gateway\'s';
};

done_testing;
