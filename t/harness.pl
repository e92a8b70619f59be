#!/usr/bin/perl
# harness.pl -- runs Sluice's tests like prove and ends with one TAP::Harness summary.
#
#   perl t/harness.pl [-j N] [-v] [--timeout S] [FILE|DIR ...]      (default: t)
#
# Each file is run by what it is: *.t with perl -Ilib -It/lib, *.lua with luajit (from the
# repository root, as the Lua unit tests expect), and an executable without an extension (the
# C unit tests the Makefile builds as build/t/unit/<name>) directly. A directory contributes,
# recursively, its *.t files, the *.lua files in unit/ folders (not the tap.lua helper) and the
# executables in build/t/unit; t/bench and t/fuzz are skipped unless named themselves. Every
# file runs under timeout(1) (default 600 s, or SLUICE_TEST_TIMEOUT), so one hung test cannot
# hang the suite. Exit status 0 only when every test passed.
use strict;
use warnings;
use File::Find qw(find);
use Getopt::Long qw(GetOptions :config bundling no_ignore_case);
use TAP::Harness;

my ($jobs, $verbose, $timeout, $help) = (1, 0, $ENV{SLUICE_TEST_TIMEOUT} // 600, 0);
GetOptions('j|jobs=i' => \$jobs, 'v|verbose' => \$verbose, 'timeout=i' => \$timeout,
           'h|help' => \$help)
    or usage(2);
usage(0) if $help;

my @files = collect(@ARGV ? @ARGV : ('t'));
die "harness.pl: no test files found in @ARGV\n" if !@files;

my $have_timeout = $timeout > 0 && grep { -x "$_/timeout" } split /:/, $ENV{PATH} // '';

my $harness = TAP::Harness->new({
    jobs      => $jobs,
    verbosity => $verbose ? 1 : 0,
    color     => -t STDOUT ? 1 : 0,
    exec      => \&command_for,
});
my $aggregate = $harness->runtests(@files);
exit($aggregate->all_passed ? 0 : 1);


sub command_for {
    my ($h, $file) = @_;
    my @cmd;
    if ($file =~ /\.t\z/) {
        @cmd = ($^X, '-Ilib', '-It/lib', $file);
    }
    elsif ($file =~ /\.lua\z/) {
        @cmd = ('luajit', $file);
    }
    elsif (-f $file && -x _) {
        @cmd = ($file =~ m{/} ? $file : "./$file");
    }
    else {
        return undef;           # let TAP::Harness decide (e.g. a .tap file)
    }
    # --foreground: the test stays in our process group, so ^C reaches it (its END block then
    # stops the servers it started); -k: SIGKILL if SIGTERM did not end it.
    unshift @cmd, 'timeout', '--foreground', '-k', '10', $timeout if $have_timeout;
    return \@cmd;
}


sub collect {
    my (@args) = @_;
    my (@out, %seen);
    for my $arg (@args) {
        if (-f $arg) {
            push @out, $arg if !$seen{$arg}++;
            next;
        }
        die "harness.pl: no such file or directory: $arg\n" if !-d $arg;

        my @found;
        (my $top = $arg) =~ s{/+\z}{};
        find({
            no_chdir => 1,
            wanted   => sub {
                my $path = $File::Find::name;
                if (-d $path) {
                    my $name = (split m{/}, $path)[-1];
                    my $skip = $name =~ /\A\./ || $path =~ m{(?:\A|/)t/(?:bench|fuzz)\z};
                    $File::Find::prune = 1 if $skip && $path ne $top;
                    return;
                }
                push @found, $path if is_test($path);
            },
        }, $top);
        push @out, grep { !$seen{$_}++ } sort @found;
    }
    return @out;
}


sub is_test {
    my ($path) = @_;
    return 1 if $path =~ /\.t\z/;
    return 1 if $path =~ m{(?:\A|/)unit/[^/]+\.lua\z} && $path !~ m{/tap\.lua\z};
    return 1 if $path =~ m{(?:\A|/)build/t/unit/[^/.]+\z} && -f $path && -x _;
    return 0;
}


sub usage {
    my ($status) = @_;
    print "usage: perl t/harness.pl [-j N] [-v] [--timeout SECONDS] [FILE|DIR ...]\n";
    exit $status;
}
