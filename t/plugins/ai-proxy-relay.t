# ai-proxy non-streaming answers relayed by the core: the body reaches the client as the
# provider sent it (same bytes, Content-Length kept, not re-chunked) while ai-proxy reads usage,
# tool calls and TTFT from the core's copy once at the end; an answer longer than the copy's
# head (1 MB) still has its usage read from the kept tail; with another body_filter plugin on
# the route the same accounting happens chunk by chunk.
use strict; use warnings; use lib 't/lib'; use Test::More;
use Sluice::Test qw(:all);

my $llm = start_mock_llm();
my $conf = $llm->ai_proxy_conf;
my $sluice = start_sluice(
    config => { plugins => ['ai-proxy', 'test-passthrough'],
                plugin_paths => [ Sluice::Test::repo_root() . '/t/plugins-fixtures' ] },
    routes => [
        { id => 'chat', uri => '/v1/chat/completions', plugins => { 'ai-proxy' => $conf } },
        { id => 'filtered', uri => '/f/v1/chat/completions',
          plugins => { 'ai-proxy' => $conf, 'test-passthrough' => {} } },
    ],
);

my $n_log = 0;
sub next_log {
    $n_log++;
    my $log = $sluice->wait_access_log($n_log);
    return $log->[$n_log - 1] || {};
}

sub chat {
    my ($path, %h) = @_;
    return post_json($sluice, $path,
                     { messages => [{ role => 'user', content => 'one two three' }] },
                     headers => \%h, max_time => 60);
}

subtest 'small answer: bytes, Content-Length and usage' => sub {
    my $r = chat('/v1/chat/completions', 'x-mock-usage' => '7,3');
    is $r->{status}, 200, 'status';
    ok defined $r->{headers}{'content-length'}, 'Content-Length kept (not chunked)';
    is $r->{headers}{'content-length'}, length $r->{body}, 'and it is the body length';
    ok !defined $r->{headers}{'transfer-encoding'}, 'no Transfer-Encoding';
    is $r->{json} && $r->{json}{usage}{prompt_tokens}, 7, 'the provider body as sent';
    my $line = next_log();
    is_deeply [ @{$line}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ],
        [7, 3, 10], 'usage logged from the copy';
    ok !$line->{llm_usage_estimated}, 'exact';
    ok defined $line->{llm_time_to_first_token}, 'TTFT set';
};

subtest 'answer past the copy head: usage from the tail' => sub {
    my $r = chat('/v1/chat/completions', 'x-mock-events' => 250000, 'x-mock-usage' => '11,250000');
    is $r->{status}, 200, 'status';
    cmp_ok length $r->{body}, '>', 1_100_000, 'a body over 1 MB (' . length($r->{body}) . ')';
    is $r->{headers}{'content-length'}, length $r->{body}, 'Content-Length matches';
    my $text = $r->{json} && $r->{json}{choices}[0]{message}{content} // '';
    is scalar(split ' ', $text), 250000, 'every word arrived';
    my $line = next_log();
    is_deeply [ @{$line}{qw(llm_prompt_tokens llm_completion_tokens llm_total_tokens)} ],
        [11, 250000, 250011], 'usage read from the tail';
    ok !$line->{llm_usage_estimated}, 'exact';
};

subtest 'tool call noticed in a relayed answer' => sub {
    my $r = chat('/v1/chat/completions', 'x-mock-tool-call' => 'get_weather');
    is $r->{status}, 200, 'status';
    my $line = next_log();
    ok $line->{llm_has_tool_calls}, 'llm_has_tool_calls';
};

subtest 'another body_filter on the route: accounted chunk by chunk' => sub {
    my $r = chat('/f/v1/chat/completions', 'x-mock-usage' => '4,5');
    is $r->{status}, 200, 'status';
    is lc($r->{headers}{'transfer-encoding'} // ''), 'chunked', 'the body-filter path (chunked)';
    is $r->{json} && $r->{json}{usage}{completion_tokens}, 5, 'body intact';
    my $line = next_log();
    is_deeply [ @{$line}{qw(llm_prompt_tokens llm_completion_tokens)} ], [4, 5], 'usage logged';
};

subtest 'provider answer that is not JSON' => sub {
    my $r = chat('/v1/chat/completions', 'x-mock-invalid-json' => 1);
    is $r->{status}, 200, 'status passed on';
    my $line = next_log();
    is $line->{llm_total_tokens}, 0, 'no usage';
    like $line->{error} // '', qr/not valid JSON/, 'the log line says why';
};

done_testing;
