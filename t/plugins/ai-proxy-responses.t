# ai-proxy and the OpenAI Responses API: detected on .../v1/responses with `input`, sent to
# the provider's /v1/responses, relayed unchanged (JSON and the typed SSE events), usage from
# `usage` (input/output tokens) or the response.completed event; a /v1/responses body without
# `input` is passthrough; a provider without the Responses API refuses it.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $mock = 'http://127.0.0.1:' . $llm->port;
my $TRUE = JSON::PP::true;
my $sluice = start_sluice(routes => [
    { id => 'oa', uri => '/v1/*',
      plugins => { 'ai-proxy' => { provider => 'openai',
                                   auth => { header => { Authorization => 'Bearer sk-oa' } },
                                   options => { model => 'gpt-route' },
                                   override => { endpoint => $mock } } } },
]);

my $n = 0;
sub ask { $n++; my ($b, %h) = @_; post_json($sluice, '/v1/responses', $b, headers => \%h) }
sub line { my $log = $sluice->wait_access_log($n); return $log->[$n - 1] || {} }
sub tokens { my ($l) = @_; [ @{$l}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ] }

subtest 'non-streaming' => sub {
    $llm->clear;
    my $r = ask({ model => 'gpt-client', instructions => 'be brief', input => 'hi there' });
    is $r->{status}, 200, 'status';
    is $r->{json}{object}, 'response', 'a response object';
    is $r->{json}{output}[0]{content}[0]{text}, 'Hello from mock', 'answer';
    my $up = $llm->last_request;
    is $up->{path}, '/v1/responses', 'path';
    is $up->{json}{model}, 'gpt-route', 'options.model';
    is $up->{json}{instructions}, 'be brief', 'instructions kept';
    ok !exists $up->{json}{stream_options}, 'no stream_options for Responses';
    my $l = line();
    is $l->{request_type}, 'ai_chat', 'ai_chat';
    is_deeply tokens($l), [4, 3, 7], 'input/output/total tokens';
    is $l->{request_llm_model}, 'gpt-client', 'request_llm_model';
    is $l->{llm_model}, 'gpt-route', 'llm_model';
};

subtest 'streaming: typed events relayed, usage from response.completed' => sub {
    my $r = ask({ stream => $TRUE, input => [{ role => 'user', content => 'hi there you' }] },
                'x-mock-events' => 8, 'x-mock-chunk-split' => 64);
    is $r->{status}, 200, 'status';
    my @ev = @{ $r->{events} };
    is $ev[0]{event}, 'response.created', 'response.created first';
    is $ev[-1]{event}, 'response.completed', 'response.completed last';
    my $text = join '', map { $_->{json}{delta} }
                        grep { $_->{event} eq 'response.output_text.delta' } @ev;
    is $text, join(' ', map { "w$_" } 1 .. 8), 'deltas';
    ok !grep({ $_->{data} eq '[DONE]' } @ev), 'no [DONE] (Responses has none)';
    my $l = line();
    is $l->{request_type}, 'ai_stream', 'ai_stream';
    ok $l->{llm_stream}, 'llm_stream';
    is_deeply tokens($l), [3, 8, 11], 'usage';
    ok !$l->{llm_usage_estimated}, 'exact';
    cmp_ok $l->{llm_time_to_first_token}, '>', 0, 'TTFT';
};

subtest 'streaming without usage in response.completed: estimated' => sub {
    my $r = ask({ stream => $TRUE, input => 'one two' }, 'x-mock-usage' => '0',
                'x-mock-events' => 10);
    is $r->{status}, 200, 'status';
    my $l = line();
    ok $l->{llm_usage_estimated}, 'estimated';
    cmp_ok $l->{llm_completion_tokens}, '>=', 10, 'one token per delta at least';
};

subtest 'forced numbers' => sub {
    ask({ input => 'x' }, 'x-mock-usage' => '300,20');
    is_deeply tokens(line()), [300, 20, 320], 'as reported';
};

subtest '/v1/responses without input is passthrough' => sub {
    $llm->clear;
    my $r = ask({ previous_response_id => 'resp_1', model => 'm' });
    is $llm->last_request->{path}, '/v1/responses', 'the client path';
    my $l = line();
    is $l->{llm_total_tokens}, 0, 'no usage for passthrough';
};

done_testing;
