# ai-proxy providers: each one's endpoint path, auth and body shaping, as the mock received
# them. override.endpoint without a path keeps the provider's own path (the provider's host is
# replaced by the mock's); with a path (azure-openai's deployment URL) it is used as it is,
# query included. Body shaping (reference §2.3.6): options overwrite, llm_options.max_tokens
# goes to the provider's field, override.request_body fills gaps (or overwrites when forced),
# azure-openai drops `model`; an untouched body is sent byte for byte, a touched one keeps
# the client's bytes except the keys that changed.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $sluice = start_sluice();
my $TRUE = JSON::PP::true;

sub route {
    my ($id, $conf) = @_;
    my $r = admin_put($sluice, "/apisix/admin/routes/$id",
                      { uri => "/$id/*", plugins => { 'ai-proxy' => $conf } });
    is $r->{status}, 201, "route $id created" or diag $r->{body};
}

my $chat = { model => 'client-model', max_tokens => 1000, temperature => 0.2,
             messages => [{ role => 'user', content => 'hello provider' }] };

# provider => [expected path, auth header name, value, max_tokens field, route extras]
my @providers = (
    ['openai', '/v1/chat/completions', 'authorization', 'Bearer sk-openai',
     'max_completion_tokens'],
    ['deepseek', '/chat/completions', 'authorization', 'Bearer sk-deepseek', 'max_tokens'],
    ['aimlapi', '/chat/completions', 'authorization', 'Bearer sk-aiml', 'max_tokens'],
    ['openrouter', '/api/v1/chat/completions', 'authorization', 'Bearer sk-or', 'max_tokens'],
    ['gemini', '/v1beta/openai/chat/completions', 'authorization', 'Bearer gem-key',
     'max_completion_tokens'],
    ['openai-compatible', '/v1/chat/completions', 'authorization', 'Bearer local',
     'max_tokens'],
    ['azure-openai', '/openai/deployments/gpt4o/chat/completions', 'api-key', 'azure-key',
     'max_tokens', '/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21'],
);

for my $p (@providers) {
    my ($name, $path, $hname, $hval, $mt_field, $ep_path) = @$p;
    subtest "provider $name" => sub {
        route($name, { provider => $name,
                       auth => { header => { $hname => $hval } },
                       options => { model => "$name-model" },
                       override => { endpoint => $mock . ($ep_path // ''),
                                     llm_options => { max_tokens => 64 } } });
        $llm->clear;
        my $r = post_json($sluice, "/$name/v1/chat/completions", $chat);
        is $r->{status}, 200, 'status 200';
        is $r->{json} && $r->{json}{object}, 'chat.completion', 'a chat completion back';
        my $up = $llm->last_request;
        is $up->{path}, $path, "path $path";
        is $up->{method}, 'POST', 'POST';
        is $up->{headers}{$hname}, $hval, "auth: $hname";
        if ($hname ne 'authorization') {
            ok !exists $up->{headers}{authorization}, 'no Authorization';
        }
        my $j = $up->{json} || {};
        if ($name eq 'azure-openai') {
            ok !exists $j->{model}, 'model removed (the deployment fixes it)';
            is $up->{args}{'api-version'}, '2024-10-21', 'endpoint query kept';
        }
        else {
            is $j->{model}, "$name-model", 'options.model';
        }
        is $j->{$mt_field}, 64, "llm_options.max_tokens -> $mt_field";
        if ($name eq 'openai') {
            ok !exists $j->{max_tokens}, 'client max_tokens dropped (newer models refuse it)';
        }
        elsif ($mt_field ne 'max_tokens') {
            is $j->{max_tokens}, 1000, 'client max_tokens kept (as APISIX)';
        }
        is $j->{temperature}, 0.2, 'other client fields kept';
        is_deeply $j->{messages}, $chat->{messages}, 'messages kept';

        my $line = wait_for(sub { my ($l) = grep { $_->{route_id} eq $name }
                                              @{ $sluice->access_log }; $l }, 3) || {};
        is $line->{llm_provider_instance}, "ai-proxy-$name", 'instance name logged';
    };
}

subtest 'openai: Responses API and embeddings paths' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/openai/v1/responses', { model => 'x', input => 'hi there' });
    is $r->{status}, 200, 'responses: 200';
    is $llm->last_request->{path}, '/v1/responses', 'responses path';
    is $llm->last_request->{json}{max_output_tokens}, 64, 'max_tokens -> max_output_tokens';
    $r = post_json($sluice, '/openai/v1/embeddings', { model => 'x', input => 'hi there' });
    is $r->{status}, 200, 'embeddings: 200';
    is $llm->last_request->{path}, '/v1/embeddings', 'embeddings path';
};

subtest 'providers without a default host need override.endpoint' => sub {
    for my $name (qw(openai-compatible azure-openai)) {
        my $r = admin_put($sluice, "/apisix/admin/routes/no-ep-$name", { uri => "/no-ep",
            plugins => { 'ai-proxy' => { provider => $name,
                                         auth => { header => { 'api-key' => 'k' } } } } });
        is $r->{status}, 400, "$name without endpoint: 400";
        like $r->{body}, qr/no default endpoint: set override\.endpoint/, 'says why';
    }
    my $r = admin_put($sluice, '/apisix/admin/routes/bad-ep', { uri => '/bad-ep',
        plugins => { 'ai-proxy' => { provider => 'openai', auth => {},
                                     override => { endpoint => 'ftp://x' } } } });
    is $r->{status}, 400, 'unsupported endpoint scheme: 400';
};

subtest 'options overwrite client fields; request_body fills gaps' => sub {
    route('shape', $llm->ai_proxy_conf(
        options => { model => 'route-model', temperature => 0.9, top_p => 0.5 },
        override => { endpoint => $mock . '/v1/chat/completions',
                      request_body => { 'openai-chat' => {
                          temperature => 0.1, user => 'gateway', seed => 7,
                          response_format => { type => 'json_object' },
                          metadata => { team => 'gw', env => 'prod' } } } }));
    $llm->clear;
    my $r = post_json($sluice, '/shape/x', { %$chat, seed => 1, metadata => { env => 'dev' } });
    is $r->{status}, 200, 'status';
    my $j = $llm->last_request->{json};
    is $j->{model}, 'route-model', 'options.model overwrites';
    is $j->{temperature}, 0.9, 'options.temperature overwrites (request_body does not)';
    is $j->{top_p}, 0.5, 'options add fields';
    is $j->{seed}, 1, 'request_body does not overwrite a client value';
    is $j->{user}, 'gateway', 'request_body fills a missing field';
    is_deeply $j->{response_format}, { type => 'json_object' }, 'objects filled';
    is_deeply $j->{metadata}, { team => 'gw', env => 'dev' }, 'objects merged key by key';
};

subtest 'request_body_force_override overwrites' => sub {
    route('force', $llm->ai_proxy_conf(
        override => { endpoint => $mock . '/v1/chat/completions',
                      llm_options => { max_tokens => 50 },
                      request_body_force_override => $TRUE,
                      request_body => { 'openai-chat' => { seed => 7, max_tokens => 20,
                                                           metadata => { env => 'prod' } } } }));
    $llm->clear;
    my $r = post_json($sluice, '/force/x', { %$chat, seed => 1, metadata => { env => 'dev',
                                                                             a => 1 } });
    is $r->{status}, 200, 'status';
    my $j = $llm->last_request->{json};
    is $j->{seed}, 7, 'client value overwritten';
    is $j->{max_tokens}, 20, 'request_body runs after llm_options';
    is_deeply $j->{metadata}, { env => 'prod', a => 1 }, 'deep merge keeps other keys';
};

subtest 'request_body for another protocol is not applied' => sub {
    route('other', $llm->ai_proxy_conf(
        override => { endpoint => $mock . '/v1/chat/completions',
                      request_body => { 'openai-responses' => { store => JSON::PP::false } } }));
    $llm->clear;
    post_json($sluice, '/other/x', $chat);
    ok !exists $llm->last_request->{json}{store}, 'not for openai-chat';
};

subtest 'an untouched body is sent byte for byte' => sub {
    route('raw', $llm->ai_proxy_conf(options => { model => undef }));
    my $raw = qq({ "model" : "m",\n  "messages":[{"role":"user","content":"h\\u00e9llo"}],)
            . qq( "n":1, "seed": 12345678901234567890, "stop": [], "logit_bias": {} });
    $llm->clear;
    my $r = post_json($sluice, '/raw/x', $raw);
    is $r->{status}, 200, 'status';
    is $llm->last_request->{body}, $raw, 'identical bytes';
};

subtest 'a touched body keeps the client\'s bytes except what changed' => sub {
    my $raw = qq({"zeta":1,"messages":[{"role":"user","content":"x"}],"model":"m",)
            . qq("seed":12345678901234567890,"stop":[],"logit_bias":{},"alpha":[1.50,2]});
    $llm->clear;
    my $r = post_json($sluice, '/shape/x', $raw);
    is $r->{status}, 200, 'status';
    my $body = $llm->last_request->{body};
    like $body, qr/"seed":12345678901234567890/, 'big integer kept exactly';
    like $body, qr/"stop":\[\]/, 'empty array stays an array';
    like $body, qr/"logit_bias":\{\}/, 'empty object stays an object';
    like $body, qr/"alpha":\[1\.50,2\]/, 'number formatting kept';
    like $body, qr/\A\{"zeta":1,"messages":/, 'key order kept';
    is $llm->last_request->{json}{model}, 'route-model', 'model replaced';
};

subtest 'streaming: stream_options.include_usage added, the rest kept' => sub {
    $llm->clear;
    my $r = post_json($sluice, '/deepseek/v1/chat/completions', { %$chat, stream => $TRUE });
    is $r->{status}, 200, 'status';
    my $j = $llm->last_request->{json};
    is_deeply $j->{stream_options}, { include_usage => $TRUE }, 'include_usage';
    is $j->{stream}, $TRUE, 'stream kept';
    is $llm->last_request->{path}, '/chat/completions', 'deepseek path';
};

done_testing;
