# ai-proxy streaming: an OpenAI chat stream is relayed event by event as the provider writes
# it, byte for byte (no re-encoding), whatever way the provider's writes are cut into TCP
# reads; stream_options.include_usage is asked of the provider so usage is exact; TTFT is the
# first event; a stream without usage is estimated and flagged; tool calls are noticed.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Time::HiRes qw(time);
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $sluice = start_sluice(routes => [
    { id => 'chat', uri => '/v1/chat/completions',
      plugins => { 'ai-proxy' => $llm->ai_proxy_conf } },
]);

my $TRUE = JSON::PP::true;
my $n_log = 0;

sub chat {
    my (%o) = @_;
    my $body = { messages => [{ role => 'user', content => 'tell me a story please' }],
                 stream => $TRUE, %{ $o{body} || {} } };
    return post_json($o{target} // $sluice, '/v1/chat/completions', $body,
                     headers => $o{headers} || {}, max_time => 30);
}

sub next_log {
    $n_log++;
    my $log = $sluice->wait_access_log($n_log);
    return $log->[$n_log - 1] || {};
}

sub text_of {
    my ($res) = @_;
    return join '', map { $_->{json} && $_->{json}{choices} && $_->{json}{choices}[0]
                          ? $_->{json}{choices}[0]{delta}{content} // '' : '' }
                    @{ $res->{events} || [] };
}

# what differs between two runs of the same mock stream
sub normalise {
    my ($s) = @_;
    $s =~ s/"created":\d+/"created":0/g;
    $s =~ s/"id":"chatcmpl-mock-\d+"/"id":"x"/g;
    return $s;
}

subtest 'events arrive as the provider writes them' => sub {
    $llm->clear;
    my $t0 = time;
    my $r = chat(headers => { 'x-mock-events' => 5, 'x-mock-chunk-delay-ms' => 250 });
    is $r->{status}, 200, 'status';
    like $r->{headers}{'content-type'} // '', qr{^text/event-stream}, 'SSE Content-Type';
    ok $r->{complete}, 'stream ended cleanly';
    my @ev = @{ $r->{events} || [] };
    is scalar @ev, 8, '5 words + finish + usage + [DONE]';
    return if @ev < 5;
    cmp_ok $ev[0]{t} - $t0, '<', 0.2, 'first event at once';
    for my $i (1 .. 4) {
        my $gap = $ev[$i]{t} - $ev[$i - 1]{t};
        cmp_ok $gap, '>', 0.15, "gap $i is ${\ sprintf '%.3f', $gap}s: not batched";
    }
    my $line = next_log();
    cmp_ok $line->{llm_time_to_first_token}, '<', 150, 'TTFT is the first event';
    cmp_ok $line->{upstream_response_time}, '>=', 1000, 'the stream lasted its 6 pauses';
};

subtest 'stream_options.include_usage is asked of the provider' => sub {
    $llm->clear;
    my $r = chat(body => { stream_options => { include_usage => JSON::PP::false } });
    is $r->{status}, 200, 'status';
    my $up = $llm->last_request->{json};
    is_deeply $up->{stream_options}, { include_usage => $TRUE }, 'include_usage: true upstream';
    my ($u) = grep { $_->{json} && $_->{json}{usage} } @{ $r->{events} };
    is_deeply $u && $u->{json}{usage},
        { prompt_tokens => 5, completion_tokens => 3, total_tokens => 8 }, 'usage chunk relayed';
    my $line = next_log();
    is_deeply [ @{$line}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ],
        [5, 3, 8], 'usage logged';
    ok !$line->{llm_usage_estimated}, 'exact';
};

subtest '66-event answer relayed byte for byte' => sub {
    $llm->clear;
    my $h = { 'x-mock-events' => 66 };
    my $r = chat(headers => $h);
    my $direct = post_json($llm, '/v1/chat/completions',
        { messages => [{ role => 'user', content => 'tell me a story please' }],
          stream => $TRUE, stream_options => { include_usage => $TRUE }, model => 'mock-model' },
        headers => $h);
    is $r->{status}, 200, 'status';
    is scalar @{ $r->{events} }, 69, '66 words + finish + usage + [DONE]';
    is normalise($r->{body}), normalise($direct->{body}), 'same bytes as from the provider';
    is text_of($r), join(' ', map { "w$_" } 1 .. 66), 'the answer';
    my $line = next_log();
    is $line->{llm_completion_tokens}, 66, 'completion tokens';
    is $line->{llm_prompt_tokens}, 5, 'prompt tokens';
};

for my $split (7, 50) {
    subtest "provider writes cut into $split-byte pieces (separate TCP reads)" => sub {
        $llm->clear;
        my $r = chat(headers => { 'x-mock-events' => 3, 'x-mock-chunk-split' => $split });
        my $direct = post_json($llm, '/v1/chat/completions',
            { messages => [{ role => 'user', content => 'tell me a story please' }],
              stream => $TRUE, stream_options => { include_usage => $TRUE },
              model => 'mock-model' },
            headers => { 'x-mock-events' => 3 });
        is $r->{status}, 200, 'status';
        ok $r->{complete}, 'complete';
        cmp_ok scalar @{ $r->{chunks} }, '>', 6, 'the client got it in many reads too';
        is normalise($r->{body}), normalise($direct->{body}), 'reassembled byte for byte';
        is text_of($r), 'w1 w2 w3', 'answer';
        my $line = next_log();
        is_deeply [ @{$line}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ],
            [5, 3, 8], 'usage found across the splits';
        ok !$line->{llm_usage_estimated}, 'exact';
        cmp_ok $line->{llm_time_to_first_token}, '>', 0, 'TTFT set';
    };
}

subtest 'a stream longer than the relay keeps (1 MB): usage still exact, from the tail' => sub {
    # ai-proxy leaves an OpenAI stream to the core, which keeps its first 1 MB and last 16 KB;
    # 6,000 events are ~1.5 MB, so the final usage event is only in the tail
    my $r = chat(headers => { 'x-mock-events' => 6000 });
    is $r->{status}, 200, 'status';
    ok $r->{complete}, 'complete';
    cmp_ok length($r->{body}), '>', 1_100_000, 'longer than what the core keeps';
    is scalar @{ $r->{events} }, 6003, 'every event relayed';
    my $line = next_log();
    is $line->{llm_completion_tokens}, 6000, 'completion tokens from the final event';
    ok !$line->{llm_usage_estimated}, 'exact';
    cmp_ok $line->{llm_time_to_first_token}, '>', 0, 'TTFT set';
};

subtest 'TTFT is the first event, not the end of the stream' => sub {
    my $r = chat(headers => { 'x-mock-events' => 4, 'x-mock-chunk-delay-ms' => 300 });
    is $r->{status}, 200, 'status';
    my $line = next_log();
    cmp_ok $line->{llm_time_to_first_token}, '<', 600, 'TTFT before the later events'
        or diag explain $line;
    cmp_ok $line->{request_time} * 1000, '>', 900, 'the stream itself took longer';
};

subtest 'provider numbers are taken as they are' => sub {
    my $r = chat(headers => { 'x-mock-usage' => '1234,567,1801' });
    is $r->{status}, 200, 'status';
    my $line = next_log();
    is_deeply [ @{$line}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ],
        [1234, 567, 1801], 'usage logged as reported';
};

subtest 'a stream without usage is estimated and flagged' => sub {
    my $r = chat(headers => { 'x-mock-usage' => '0', 'x-mock-events' => 20 });
    is $r->{status}, 200, 'status';
    ok !grep({ $_->{json} && $_->{json}{usage} } @{ $r->{events} }), 'no usage in the stream';
    my $line = next_log();
    ok $line->{llm_usage_estimated}, 'llm_usage_estimated';
    cmp_ok $line->{llm_completion_tokens}, '>=', 20, 'at least one token per delta';
    cmp_ok $line->{llm_completion_tokens}, '<=', 40, 'not wildly more';
    cmp_ok $line->{llm_prompt_tokens}, '>=', 1, 'prompt estimated from the request';
    is $line->{llm_total_tokens}, $line->{llm_prompt_tokens} + $line->{llm_completion_tokens},
        'total = prompt + completion';
};

subtest 'tool calls in a stream are noticed' => sub {
    my $r = chat(headers => { 'x-mock-tool-call' => 'get_weather' },
                 body => { tools => [{ type => 'function', function => { name => 'get_weather',
                                       parameters => { type => 'object' } } }] });
    is $r->{status}, 200, 'status';
    ok grep({ ($_->{data} // '') =~ /get_weather/ } @{ $r->{events} }), 'tool call relayed';
    my $line = next_log();
    ok $line->{llm_has_tool_calls}, 'llm_has_tool_calls';
    is $line->{llm_tool_count}, 1, 'llm_tool_count';
};

subtest 'a route with options.stream: usage still asked for' => sub {
    $sluice->write_routes([
        { id => 'chat', uri => '/v1/chat/completions',
          plugins => { 'ai-proxy' => $llm->ai_proxy_conf } },
        { id => 'forced', uri => '/forced',
          plugins => { 'ai-proxy' => $llm->ai_proxy_conf(options => { stream => $TRUE }) } },
    ]);
    my $r;
    ok wait_for(sub {
        $r = post_json($sluice, '/forced', { messages => [{ role => 'user', content => 'a b' }] });
        $r->{status} == 200;
    }, 5), 'route loaded';
    like $r->{headers}{'content-type'} // '', qr{^text/event-stream}, 'provider streamed';
    is_deeply $llm->last_request->{json}{stream_options}, { include_usage => $TRUE },
        'include_usage follows options.stream (APISIX quirk #10 fixed)';
    my $line = wait_for(sub {
        my ($l) = grep { $_->{route_id} eq 'forced' && $_->{status} == 200 }
                  @{ $sluice->access_log };
        $l;
    }, 5);
    is $line && $line->{llm_completion_tokens}, 3, 'usage exact';
};

done_testing;
