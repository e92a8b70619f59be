# ai-proxy and Anthropic: the native Messages API relayed (x-api-key from the route,
# anthropic-version defaulted, usage from message_start + message_delta with total = prompt +
# completion, APISIX #13662); OpenAI chat clients served by the anthropic provider through the
# Messages API (request, response and stream converted); Anthropic clients served by an
# OpenAI provider (APISIX's converter), streams included; and an override.endpoint with its
# own path takes the client's protocol unchanged, as APISIX does.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $TRUE = JSON::PP::true;
my $sluice = start_sluice(routes => [
    { id => 'anth', uri => '/anth/*',
      plugins => { 'ai-proxy' => { provider => 'anthropic',
                                   auth => { header => { 'x-api-key' => 'sk-ant-route' } },
                                   options => { model => 'claude-route' },
                                   override => { endpoint => $mock } } } },
    { id => 'anth-bearer', uri => '/bearer/*',
      plugins => { 'ai-proxy' => { provider => 'anthropic',
                                   auth => { header => { Authorization => 'Bearer sk-ant-b' } },
                                   override => { endpoint => $mock } } } },
    { id => 'anth-compat', uri => '/compat/*',
      plugins => { 'ai-proxy' => { provider => 'anthropic',
                                   auth => { header => { Authorization => 'Bearer sk-ant-c' } },
                                   override => { endpoint => "$mock/v1/chat/completions" } } } },
    { id => 'oa', uri => '/oa/*',
      plugins => { 'ai-proxy' => { provider => 'openai',
                                   auth => { header => { Authorization => 'Bearer sk-oa' } },
                                   override => { endpoint => $mock } } } },
]);

my $n = 0;
sub ask {
    my ($path, $body, %h) = @_;
    $n++;
    return post_json($sluice, $path, $body, headers => \%h);
}
sub line { my $log = $sluice->wait_access_log($n); return $log->[$n - 1] || {} }
sub tokens { my ($l) = @_; [ @{$l}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ] }

my $msg = { model => 'claude-client', max_tokens => 100, system => 'be brief',
            messages => [{ role => 'user', content => 'hi there' }] };
my %client_creds = ('x-api-key' => 'sk-ant-client', Authorization => 'Bearer sk-client');

subtest 'native Messages API' => sub {
    $llm->clear;
    my $r = ask('/anth/v1/messages', $msg, %client_creds, 'anthropic-beta' => 'tools-2024');
    is $r->{status}, 200, 'status';
    is $r->{json}{type}, 'message', 'an Anthropic message';
    is $r->{json}{content}[0]{text}, 'Hello from mock', 'answer';
    my $up = $llm->last_request;
    is $up->{path}, '/v1/messages', '/v1/messages';
    is $up->{headers}{'x-api-key'}, 'sk-ant-route', 'route key, not the client\'s';
    ok !exists $up->{headers}{authorization}, 'no client Authorization';
    is $up->{headers}{'anthropic-version'}, '2023-06-01', 'anthropic-version defaulted';
    is $up->{headers}{'anthropic-beta'}, 'tools-2024', 'anthropic-beta passes';
    is $up->{json}{model}, 'claude-route', 'options.model';
    is $up->{json}{system}, 'be brief', 'system kept';
    my $l = line();
    is $l->{request_type}, 'ai_chat', 'ai_chat';
    is_deeply tokens($l), [4, 3, 7], 'usage: input + output';
    is $l->{request_llm_model}, 'claude-client', 'request_llm_model';
    is $l->{llm_model}, 'claude-route', 'llm_model';
};

subtest 'native Messages API: the client\'s anthropic-version wins' => sub {
    ask('/anth/v1/messages', $msg, 'anthropic-version' => '2023-01-01');
    is $llm->last_request->{headers}{'anthropic-version'}, '2023-01-01', 'client version kept';
    line();
};

subtest 'native Messages stream: relayed, usage merged from two events' => sub {
    my $r = ask('/anth/v1/messages', { %$msg, stream => $TRUE }, 'x-mock-events' => 9,
                'x-mock-chunk-split' => 40);
    is $r->{status}, 200, 'status';
    my @types = map { $_->{event} } @{ $r->{events} };
    is $types[0], 'message_start', 'message_start first';
    is $types[-1], 'message_stop', 'message_stop last';
    is scalar(grep { $_ eq 'content_block_delta' } @types), 9, '9 deltas';
    my $l = line();
    is $l->{request_type}, 'ai_stream', 'ai_stream';
    is_deeply tokens($l), [4, 9, 13], 'total = input (message_start) + output (message_delta)';
    ok !$l->{llm_usage_estimated}, 'exact';
    cmp_ok $l->{llm_time_to_first_token}, '>', 0, 'TTFT';
};

subtest 'OpenAI chat client, anthropic provider: through the Messages API' => sub {
    $llm->clear;
    my $r = ask('/bearer/v1/chat/completions',
                { model => 'claude-3', messages => [{ role => 'system', content => 'be brief' },
                                                    { role => 'user', content => 'hi there' }] },
                %client_creds);
    is $r->{status}, 200, 'status';
    my $j = $r->{json} || {};
    is $j->{object}, 'chat.completion', 'an OpenAI chat completion';
    is $j->{choices}[0]{message}{content}, 'Hello from mock', 'answer';
    is $j->{choices}[0]{finish_reason}, 'stop', 'end_turn -> stop';
    is $j->{usage}{prompt_tokens}, 4, 'usage.prompt_tokens';
    is $j->{usage}{completion_tokens}, 3, 'usage.completion_tokens';
    is $j->{usage}{total_tokens}, 7, 'usage.total_tokens';
    my $up = $llm->last_request;
    is $up->{path}, '/v1/messages', 'sent to /v1/messages';
    is $up->{headers}{'x-api-key'}, 'sk-ant-b', 'Bearer key moved to x-api-key';
    ok !exists $up->{headers}{authorization}, 'no Authorization';
    is $up->{headers}{'anthropic-version'}, '2023-06-01', 'anthropic-version';
    is $up->{json}{system}, 'be brief', 'system message -> system';
    is_deeply $up->{json}{messages}, [{ role => 'user', content => 'hi there' }], 'messages';
    ok $up->{json}{max_tokens}, 'max_tokens supplied (Anthropic requires it)';
    is_deeply tokens(line()), [4, 3, 7], 'usage logged';
};

subtest 'OpenAI chat stream, anthropic provider: converted to chunks' => sub {
    my $r = ask('/bearer/v1/chat/completions',
                { model => 'claude-3', stream => $TRUE,
                  stream_options => { include_usage => $TRUE },
                  messages => [{ role => 'user', content => 'hi there' }] },
                'x-mock-events' => 5);
    is $r->{status}, 200, 'status';
    like $r->{headers}{'content-type'}, qr{^text/event-stream}, 'SSE';
    my @ev = @{ $r->{events} };
    is $ev[-1]{data}, '[DONE]', 'ends with [DONE]';
    my $text = join '', map { $_->{json} && $_->{json}{choices} && $_->{json}{choices}[0]
                              ? $_->{json}{choices}[0]{delta}{content} // '' : '' } @ev;
    is $text, 'w1 w2 w3 w4 w5', 'the deltas';
    ok !grep({ $_->{json} && ($_->{json}{object} // '') ne 'chat.completion.chunk' } @ev),
        'every event a chat.completion.chunk';
    my ($u) = grep { $_->{json} && $_->{json}{usage} } @ev;
    ok $u, 'usage chunk (include_usage)';
    is $u && $u->{json}{usage}{completion_tokens}, 5, 'completion tokens in it';
    my $l = line();
    is_deeply tokens($l), [2, 5, 7], 'usage logged';
    ok !$l->{llm_usage_estimated}, 'exact';
};

subtest 'Anthropic client, OpenAI provider: converted' => sub {
    $llm->clear;
    my $r = ask('/oa/v1/messages', $msg, %client_creds, 'anthropic-version' => '2023-06-01',
                'x-stainless-lang' => 'js');
    is $r->{status}, 200, 'status';
    is $r->{json}{type}, 'message', 'an Anthropic message back';
    is $r->{json}{content}[0]{text}, 'Hello from mock', 'answer';
    is $r->{json}{stop_reason}, 'end_turn', 'stop -> end_turn';
    is_deeply $r->{json}{usage}, { input_tokens => 4, output_tokens => 3 }, 'usage converted';
    my $up = $llm->last_request;
    is $up->{path}, '/v1/chat/completions', 'sent to chat completions';
    is $up->{headers}{authorization}, 'Bearer sk-oa', 'route key';
    ok !exists $up->{headers}{'x-api-key'}, 'client x-api-key not sent';
    ok !grep({ /^(anthropic-|x-stainless-)/ } keys %{ $up->{headers} }),
        'Anthropic SDK headers dropped';
    is_deeply $up->{json}{messages}, [{ role => 'system', content => 'be brief' },
                                      { role => 'user', content => 'hi there' }],
        'system -> system message';
    is_deeply tokens(line()), [4, 3, 7], 'usage logged';
};

subtest 'Anthropic stream, OpenAI provider: converted to Anthropic events' => sub {
    my $r = ask('/oa/v1/messages', { %$msg, stream => $TRUE }, 'x-mock-events' => 6,
                'x-mock-chunk-split' => 30);
    is $r->{status}, 200, 'status';
    my @ev = @{ $r->{events} };
    my @types = map { $_->{event} } @ev;
    is $types[0], 'message_start', 'message_start';
    is $types[-1], 'message_stop', 'message_stop';
    my $text = join '', map { $_->{json}{delta}{text} // '' }
                        grep { $_->{event} eq 'content_block_delta' } @ev;
    is $text, 'w1 w2 w3 w4 w5 w6', 'the deltas';
    my ($md) = grep { $_->{event} eq 'message_delta' } @ev;
    is $md && $md->{json}{usage}{output_tokens}, 6, 'message_delta carries output_tokens';
    is $md && $md->{json}{delta}{stop_reason}, 'end_turn', 'stop_reason';
    is_deeply $llm->last_request->{json}{stream_options}, { include_usage => $TRUE },
        'usage asked of the OpenAI provider';
    my $l = line();
    is_deeply tokens($l), [4, 6, 10], 'usage logged';
    ok !$l->{llm_usage_estimated}, 'exact';
};

subtest 'override.endpoint with a path: OpenAI chat goes there unchanged (as APISIX)' => sub {
    $llm->clear;
    my $body = { model => 'claude-3', messages => [{ role => 'user', content => 'hi' }] };
    my $r = ask('/compat/v1/chat/completions', $body);
    is $r->{status}, 200, 'status';
    is $r->{json}{object}, 'chat.completion', 'OpenAI answer';
    is $llm->last_request->{path}, '/v1/chat/completions', 'the endpoint\'s path';
    is_deeply $llm->last_request->{json}, $body, 'body unchanged';
    line();
};

done_testing;
