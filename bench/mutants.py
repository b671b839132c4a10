"""The mutation list: `python -m bench mutants` removes one safeguard at a time and runs the tests
that must catch it.

Each mutant names a file, an exact snippet of today's code and its replacement (the safeguard
taken away), and the test node ids that must fail without it. The runner copies the working tree
(tracked and untracked files, not the ignored ones) to a scratch folder, applies one mutant there,
checks that the interpreter and the daemon child processes import the mutated copy (PYTHONPATH
and cwd point at the scratch copy; an import-path assertion proves it), runs the tests with `-x`,
and records "caught" (a test failed) or "survived" (they all passed). It prints a table, writes
bench/results/mutants.json, and exits 1 if a mutant survived, or was not run to a verdict.

When the code changes, a mutant whose snippet is no longer found fails loudly: re-target it
(the list is maintained with the code, like the tests).

    python -m bench mutants              every mutant (first the tests once without any: the baseline)
    python -m bench mutants --only ID    one (repeatable)
    python -m bench mutants --list       the list
    python -m bench mutants --table      the latest recorded result of each, as RELIABILITY.md shows it
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "mutants.json"

SAFE = "tests/test_safeguards.py"
FAULTS = "tests/test_faults.py"


@dataclass(frozen=True)
class Mutant:
    id: str
    description: str
    file: str
    snippet: str
    replacement: str
    tests: tuple[str, ...]


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "verify-call",
        "the daemon's read-back verification call removed",
        "acqd/pipeline.py",
        "                await self._io(layout.verify, tier, dest, replace(res, meta_checksum=None))\n",
        "                pass\n",
        (f"{FAULTS}::test_corrupt_reads_are_caught_by_verification",),
    ),
    Mutant(
        "verified-before-verify",
        "the journal records 'verified' before the read-back",
        "acqd/pipeline.py",
        "            if not adopted:  # an adopted copy was verified just now; its metadata checksum was taken from\n"
        "                # it a moment ago (compared by `acqd verify` from now on, not read a second time here)\n"
        "                await self._io(layout.verify, tier, dest, replace(res, meta_checksum=None))\n"
        "            t_verify = self.mono() - t_verify\n"
        '            stage = "write"\n'
        "            if self.guard is not None:  # the copy just read back lies on the claimed tier, not in the\n"
        "                # empty mount point of a share unmounted while it was written\n"
        "                await self._io(self.guard, tier, True)\n"
        '            crash_point("after_verify")\n'
        "            row = await self._j(self.journal.record_verified, row.id, tier.name, dest, stamp)\n",
        "            row = await self._j(self.journal.record_verified, row.id, tier.name, dest, stamp)\n"
        "            if not adopted:  # an adopted copy was verified just now; its metadata checksum was taken from\n"
        "                # it a moment ago (compared by `acqd verify` from now on, not read a second time here)\n"
        "                await self._io(layout.verify, tier, dest, replace(res, meta_checksum=None))\n"
        "            t_verify = self.mono() - t_verify\n"
        '            stage = "write"\n'
        "            if self.guard is not None:  # the copy just read back lies on the claimed tier, not in the\n"
        "                # empty mount point of a share unmounted while it was written\n"
        "                await self._io(self.guard, tier, True)\n"
        '            crash_point("after_verify")\n',
        (f"{FAULTS}::test_corrupt_reads_are_caught_by_verification",),
    ),
    Mutant(
        "copy-verify-checksum",
        "the copy layout's verify ignores the decoded checksum",
        "acqd/layouts/copy.py",
        "        checksum, n = self._decoded(tier, dest)\n"
        "        if n != expected.source_bytes or checksum != expected.source_checksum:\n",
        "        checksum, n = self._decoded(tier, dest)\n        if False:\n",
        (f"{FAULTS}::test_corrupt_reads_are_caught_by_verification",),
    ),
    Mutant(
        "batch-verify-checksum",
        "the read-back of a batch of small files ignores the decoded checksum",
        "acqd/layouts/copy.py",
        "        checksum = hasher.hexdigest()\n"
        "        if n != expected.source_bytes or checksum != expected.source_checksum:\n",
        "        checksum = hasher.hexdigest()\n        if False:\n",
        (f"{SAFE}::test_batch_read_back_catches_corrupt_bytes",),
    ),
    Mutant(
        "tiff-verify-checksum",
        "the TIFF layout's verify ignores the pixel checksum",
        "acqd/layouts/frames.py",
        "            tif.close()\n            f.close()\n        if h.hexdigest() != expected.source_checksum:\n",
        "            tif.close()\n            f.close()\n        if False:\n",
        (f"{SAFE}::test_frame_layouts_verify_pixels[tiff]",),
    ),
    Mutant(
        "zarr-verify-checksum",
        "the Zarr layout's verify ignores the pixel checksum",
        "acqd/layouts/frames.py",
        "                hash_canonical(h, frame)\n        if h.hexdigest() != expected.source_checksum:\n",
        "                hash_canonical(h, frame)\n        if False:\n",
        (f"{SAFE}::test_frame_layouts_verify_pixels[zarr]",),
    ),
    Mutant(
        "release-identity",
        "the release identity check reduced to 'is a regular file'",
        "acqd/pipeline.py",
        "            if not identity_of(st).same_file_as(row.identity):\n",
        "            if False:  # only 'is a regular file' is left\n",
        (
            "tests/test_release.py::test_a_file_rewritten_while_its_copy_is_rechecked_is_kept_and_shipped_again",
            f"{SAFE}::test_file_rewritten_before_release_is_kept[False]",
        ),
    ),
    Mutant(
        "source-replaced-check",
        "a source replaced by another file while being read goes unnoticed",
        "acqd/pipeline.py",
        "        if now.st_ino != st.st_ino:\n",
        "        if False:\n",
        ("tests/test_bad_inputs.py::test_file_replaced_by_another_with_the_same_name_during_shipping",),
    ),
    Mutant(
        "hold-session-only",
        "holds cover whole sessions only (not a file or a folder below one)",
        "acqd/policy/planner.py",
        '        return item.session == t or item.relpath == t or item.relpath.startswith(t + "/")\n',
        "        return item.session == t\n",
        (f"{SAFE}::test_hold_on_one_file_blocks_its_purge",),
    ),
    Mutant(
        "purge-hold-recheck",
        "the hold re-check just before a purge removed",
        "acqd/retention.py",
        "        if any(h.covers(a.item, now) for h in holds):\n",
        "        if False:\n",
        (f"{SAFE}::test_hold_added_after_planning_blocks_the_purge",),
    ),
    Mutant(
        "transition-verify",
        "a tier transition deletes the old copy without verifying the new one",
        "acqd/retention.py",
        "            await self._io(self._layout(row).verify, dst, rel, row.copy.as_result())\n"
        "        except Exception:\n",
        "            pass\n        except Exception:\n",
        ("tests/test_retention.py::test_transition_never_deletes_an_unverified_copy",),
    ),
    Mutant(
        "purge-clock-guard",
        "purges go ahead after a clock jump",
        "acqd/policy/planner.py",
        "        now, wall, sent = clock.effective, clock.last.wall, clock.stamp\n",
        "        now, wall, sent = clock.last.wall, clock.last.wall, clock.last.wall  # the wall clock alone\n",
        ("tests/test_policy.py::test_no_purge_before_the_warned_date_whatever_the_wall_clock_does",),
    ),
    Mutant(
        "warning-dated-by-lagging-clock",
        "a warning sent while the wall clock is behind is dated from the wall clock (a short lead time)",
        "acqd/policy/planner.py",
        "clock.effective, clock.last.wall, clock.stamp\n",
        "clock.effective, clock.last.wall, clock.effective\n",
        ("tests/test_retention.py::test_a_warning_sent_while_the_wall_clock_is_behind_counts_from_when_it_went_out",),
    ),
    Mutant(
        "purge-warning-lead",
        "a purge waits for the expiry only, not for the delivered warning's lead time",
        "acqd/policy/planner.py",
        "        purge_at = max(expiry, *(max(w.sent_at + rule.warn, w.purge_at) for w in told))\n",
        "        purge_at = expiry\n",
        ("tests/test_policy.py::test_no_purge_without_a_delivered_warning_and_its_lead_time",),
    ),
    Mutant(
        "warning-outlived-by-hold",
        "a warning still stands after a hold kept the data past its date (purged at the next sweep, unwarned)",
        "acqd/policy/planner.py",
        "    if any(h.covers(item, w.purge_at) for h in holds):",
        "    if False:",
        (
            "tests/test_retention.py::test_a_hold_past_the_warned_date_is_followed_by_a_second_warning",
            "tests/test_policy.py::test_a_purge_follows_a_warning_no_hold_outlived",
        ),
    ),
    Mutant(
        "warning-void-ignored",
        "a warning whose purge the policy called off stays on file (a later policy purges on it, unwarned)",
        "acqd/retention.py",
        '            if a.kind == "void":\n',
        "            if False:\n",
        ("tests/test_retention.py::test_a_purge_the_policy_called_off_is_warned_again_when_it_returns",),
    ),
    Mutant(
        "recipient-ignored",
        "a warning delivered to one recipient counts for all (one whose digest failed is never warned)",
        "acqd/policy/planner.py",
        '[w for w in mine if w.recipient in (r, "")]',
        "mine",
        (
            "tests/test_policy.py::test_a_recipient_whose_digest_failed_is_warned_again_and_the_purge_waits_for_it",
            "tests/test_retention.py::test_a_recipient_whose_digest_was_refused_is_warned_again_alone",
        ),
    ),
    Mutant(
        "purge-caps",
        "a sweep purges past its caps",
        "acqd/policy/planner.py",
        "        if n + 1 > caps.maxItemsPerSweep or total + p.item.size > caps.maxBytesPerSweep:\n",
        "        if False:\n",
        ("tests/test_policy.py::test_caps_limit_a_sweep",),
    ),
    Mutant(
        "restore-checksum",
        "`acqd restore` skips its checksum check",
        "acqd/fixity.py",
        "        if checksum != copy.checksum:\n",
        "        if False:\n",
        (f"{SAFE}::test_restore_refuses_a_corrupt_copy",),
    ),
    Mutant(
        "mrc-settle",
        "format settling (MRC header size) always says 'complete'",
        "acqd/pipeline.py",
        "                        fmt_ok = c.announced_now == size and not tail_unwritten(read, size)\n",
        "                        fmt_ok = True\n",
        (f"{SAFE}::test_growing_mrc_movie_ships_once_complete",),
    ),
    Mutant(
        "several-series-stacked",
        "a TIFF of several image series (stage positions, time points per position) is read as one z axis"
        " of all their planes: positions mixed into depth",
        "acqd/readers/tiff.py",
        "            apart = count > 1 and any(len(s.pages) > 1 for s in tif.series)\n",
        "            apart = False\n",
        (
            "tests/test_source_structure.py::test_a_tiff_of_several_series_is_never"
            "_stored_as_one_z_axis[ome-positions]",
            "tests/test_source_structure.py::test_a_tiff_of_several_series_is_never"
            "_stored_as_one_z_axis[appended-stacks]",
        ),
    ),
    Mutant(
        "misnamed-file-quarantined",
        "a valid file of another format under a name the profile gives its reader (an MRC named .tif) is"
        " quarantined as damaged: never stored, its only copy on the acquisition disk",
        "acqd/readers/__init__.py",
        "        kind = _other_format(f, reader)\n",
        "        kind = None\n",
        (
            "tests/test_frames.py::test_a_valid_file_the_reader_cannot_read_as_frames_is_stored_byte_exact"
            "[t-tiff-any-m/movie.tif-mrc]",
            "tests/test_frames.py::test_a_valid_file_the_reader_cannot_read_as_frames_is_stored_byte_exact"
            "[t-mrc-zarr-m/stack.mrc-tiff]",
        ),
    ),
    Mutant(
        "raw-mib-quarantined",
        "a raw-mode Merlin MIB (R64) is read as 8-byte pixels and quarantined as truncated: never stored",
        "acqd/readers/mib.py",
        '    if ptype == "R64":',
        "    if False:",
        (
            "tests/test_frames.py::test_a_valid_file_the_reader_cannot_read_as_frames_is_stored_byte_exact"
            "[t-mib-m/raw.mib-raw-mib]",
        ),
    ),
    Mutant(
        "part-by-part-released-at-once",
        "a file seen growing part by part and complete by its stillness alone is released as soon as it is"
        " verified: a writer that closes it between parts and pauses makes a fragment of the rest",
        "acqd/pipeline.py",
        "                        c.grew = True\n",
        "                        pass\n",
        (
            "tests/test_robust.py::test_a_file_appended_part_by_part_is_kept_through_its_writers_pause[hamamatsu-orca]",
            "tests/test_robust.py::test_a_file_appended_part_by_part_is_kept_through_its_writers_pause[generic]",
        ),
    ),
    Mutant(
        "mapping-writer-unseen",
        "a process writing a file through a shared mapping whose descriptor it closed is no writer: the file"
        " is released under it, the rest of its data lost",
        "acqd/openfiles.py",
        "                mapped = shared_writable_inodes(m.read())\n",
        "                mapped = set()\n",
        ("tests/test_release.py::test_scan_finds_a_writer_through_a_mapping_whose_descriptor_is_closed",),
    ),
    Mutant(
        "verify-elsewhere-recorded",
        "acqd verify --dest naming a mirror records what is missing there as lost on the tier itself",
        "acqd/cli.py",
        "                    if tiers.elsewhere(copy.tier) is not None:\n                        continue",
        "                    pass",
        ("tests/test_fixity.py::test_verify_against_a_dest_that_is_not_the_tiers_records_nothing",),
    ),
    Mutant(
        "verified-by-wall-clock-behind",
        "a copy is dated verified by the wall clock alone: shipped while the clock was behind, it is purged"
        " early by as much once the clock is put right",
        "acqd/journal.py",
        "            at = self._verified_now()  # the copies' age",
        "            at = self._clock()  # the copies' age",
        (
            "tests/test_journal.py::test_a_copy_verified_while_the_wall_clock_is_be"
            "hind_is_dated_by_the_trusted_calendar",
        ),
    ),
    Mutant(
        "undeliverable-warnings-unsaid-at-start",
        "a daemon whose purge warnings reach nobody (no smtp:) says nothing at start; the purges follow",
        "acqd/daemon.py",
        '                        log.error("retention: %s", problem)\n',
        "                        pass\n",
        ("tests/test_retention.py::test_a_daemon_whose_purge_warnings_reach_nobody_says_so_at_start",),
    ),
    Mutant(
        "restore-mtime-dropped",
        "a restored file carries the time of the restore, not the source's modification time",
        "acqd/fixity.py",
        "        if mtime_ns > 0:\n            os.utime(",
        "        if False:\n            os.utime(",
        ("tests/test_fixity.py::test_restore_gives_the_file_its_modification_time[generic]",),
    ),
    Mutant(
        "gone-pending-row-kept",
        "a pending row whose file an event finds gone, neither waiting nor in flight, stays seen for ever",
        "acqd/pipeline.py",
        "                            if gone:\n                                await self._admit_gone(ctx, gone)\n",
        "                            if gone:\n                                pass\n",
        ("tests/test_inprocess.py::test_a_pending_row_whose_file_an_event_finds_gone_is_vanished",),
    ),
    Mutant(
        "warning-date-without-time",
        "a purge warning's subject names the purge's day alone, read as the end of that day in the reader's zone",
        "policies/templates/warning.subject.j2",
        "will be deleted from {{ first_purge | moment }}",
        "will be deleted on {{ first_purge | day }}",
        ("tests/test_retention.py::test_seventy_five_days_of_a_facility",),
    ),
    Mutant(
        "grown-store-recorded-missing",
        "a Zarr copy a scientist added labels to is recorded missing at its purge: kept, but no longer tracked"
        " (restore refused, gone from its manifest)",
        "acqd/retention.py",
        "        if changed is not None and changed.startswith(GROWN_STORE):\n",
        "        if False:\n",
        ("tests/test_safeguards.py::test_a_store_a_scientist_added_labels_to_is_not_purged_and_stays_tracked",),
    ),
    Mutant(
        "plan-silent-on-another-policy",
        "acqd plan previews the policy file in silence while the running daemon sweeps by another (edited, not"
        " reloaded): a dry run that shows no purge the daemon then makes",
        "acqd/cli.py",
        "        if stale is not None:\n            err.print(",
        "        if False:\n            err.print(",
        ("tests/test_retention.py::test_plan_says_when_the_running_daemon_sweeps_by_another_policy",),
    ),
    Mutant(
        "reload-policy-unnoted",
        "a reload that applies a policy does not say so: acqd plan keeps saying the daemon runs another",
        "acqd/daemon.py",
        "                self.retention.policy = policy\n                note_running_policy(new.state_dir, policy)\n",
        "                self.retention.policy = policy\n",
        ("tests/test_retention.py::test_plan_says_when_the_running_daemon_sweeps_by_another_policy",),
    ),
    Mutant(
        "purge-rule-notifying-nobody-taken",
        "a purging rule with an empty notify is taken: its files have nobody to warn, their purges wait for ever",
        "acqd/policy/model.py",
        "            if not self.notify:\n",
        "            if False:\n",
        ("tests/test_policy.py::test_a_purging_rule_that_notifies_nobody_is_refused",),
    ),
    Mutant(
        "shape-conflict-unchecked",
        "a file whose name is a folder of stored copies (or whose folder is a stored file) is written and retried"
        " as a failing destination, with a symptom for a message and no remedy",
        "acqd/pipeline.py",
        "            await self._shape_free(c, tier, dest)\n",
        "",
        (
            "tests/test_names.py::test_a_file_and_a_folder_taking_one_name_in_turn_"
            "wait_with_the_cause_then_ship_once_renamed",
        ),
    ),
    Mutant(
        "file-in-folders-way-retried-as-failure",
        "a file at the destination where a folder is needed is a destination failure, retried at its pace, not a"
        " conflict naming what is in the way",
        "acqd/pipeline.py",
        "        except PathBlockedError as exc:  # a file where a folder of its name is needed: never replaced\n",
        "        except ZeroDivisionError as exc:\n",
        ("tests/test_names.py::test_a_file_in_the_way_of_a_folder_at_the_destination_is_a_conflict_never_replaced",),
    ),
    Mutant(
        "temporary-below-a-file-cleaned-for-ever",
        "a pending row whose folder is a file at the destination cannot have its temporary looked for: warned at"
        " every start, the row never marked gone",
        "acqd/storage/base.py",
        "            except (FileNotFoundError, NotADirectoryError):  # a folder of the name is a file\n",
        "            except FileNotFoundError:\n",
        (
            "tests/test_names.py::test_a_file_and_a_folder_taking_one_name_in_turn_"
            "wait_with_the_cause_then_ship_once_renamed",
        ),
    ),
    Mutant(
        "conflict-said-at-every-retry",
        "a conflict is logged as an ERROR and published as an event at every retry, not once",
        "acqd/pipeline.py",
        "        if _remember(self._conflicts, c.key, why):\n",
        "        if False:\n",
        (
            "tests/test_names.py::test_a_file_and_a_folder_taking_one_name_in_turn_"
            "wait_with_the_cause_then_ship_once_renamed",
        ),
    ),
    Mutant(
        "held-release-content-uncompared",
        "a file held for a writer after it was shipped is released on its size and times alone: a final write"
        " through a shared mapping into a dirty page moves neither, and goes with the file",
        "acqd/pipeline.py",
        "        if row.id in uncompared and not await self._still_shipped(c, row, st):\n            return\n",
        "",
        ("tests/test_release.py::test_a_final_write_through_a_mapping_that_moves_no_time_is_shipped_never_lost",),
    ),
    Mutant(
        "held-batch-release-uncompared",
        "a batch of releases takes files held for a writer since they were shipped without comparing their content",
        "acqd/pipeline.py",
        "            uncompared = await self._j(self.journal.held_uncompared, [row.id for _c, row, _st in plain])\n",
        "            uncompared = set()\n",
        ("tests/test_release.py::test_a_final_write_through_a_mapping_that_moves_no_time_is_shipped_never_lost",),
    ),
    Mutant(
        "changed-content-same-identity-not-a-version",
        "a verified file whose content is known to differ, its identity the same, gets no new version: kept for"
        " ever, its new content never shipped",
        "acqd/journal.py",
        "                if ob.changed and (action is Observed.RECHECK or (row is not None and row.state is State"
        ".VERIFIED)):\n",
        "                if ob.changed and action is Observed.RECHECK:\n",
        ("tests/test_release.py::test_a_final_write_through_a_mapping_that_moves_no_time_is_shipped_never_lost",),
    ),
    Mutant(
        "read-under-writer-unnoted",
        "a file read while a writer has it mapped, the writer gone by the release's look, is released on its"
        " size and times: a final write through the mapping while the copy was made goes with it",
        "acqd/pipeline.py",
        "                await self._note_read_under_writer(c, row)\n",
        "                pass\n",
        ("tests/test_release.py::test_a_final_write_through_a_mapping_while_the_copy_is_made_is_shipped_never_lost",),
    ),
    Mutant(
        "interrupted-release-folder-moved-taken-for-released",
        "a release a crash interrupted, its folder moved or renamed since, is recorded released: the files"
        " are where the folder went (one under a hidden name) and nothing says so",
        "acqd/pipeline.py",
        "            elif await self._io(_folder_gone, row.root, row.relpath):\n"
        "                await self._release_unknown(ctx, row)\n",
        "",
        (
            "tests/test_release.py::test_a_crash_in_a_release_then_its_folder_moved_is_not_taken_for_released[outside]",
            "tests/test_release.py::test_a_crash_in_a_release_then_its_folder_moved_is_not_taken_for_released[renamed]",
        ),
    ),
    Mutant(
        "aside-name-lost-with-its-folder",
        "a file found under a release's hidden name in a renamed folder is said to be unknown to the journal",
        "acqd/journal.py",
        "        return here if here is not None or not rows else str(rows[0][0])",
        "        return here",
        ("tests/test_release.py::test_a_crash_in_a_release_then_its_folder_moved_is_not_taken_for_released[renamed]",),
    ),
    Mutant(
        "truncated-mrc-quarantined",
        "an MRC cut short (fewer frames than its header counts, no writer) is quarantined: its only copy stays on"
        " the acquisition disk",
        "acqd/readers/mrc.py",
        "        raise CutShortError(  # a writer that wrote the header first, still at work or cut short\n",
        "        raise FormatError(\n",
        (
            "tests/test_frames.py::test_a_file_cut_short_is_stored_byte_exact_never_as_its_frames_so_far[mrc]",
            "tests/test_mismatch.py::test_valid_mrc_outside_the_profiles_modes_is_stored_and_flagged",
        ),
    ),
    Mutant(
        "partial-mib-frame-quarantined",
        "a MIB with a frame half there (no writer) is quarantined: its only copy stays on the acquisition disk",
        "acqd/readers/mib.py",
        '        if b"MQ1,".startswith(tail):  # a frame\'s header begun: the frame is half there\n'
        "            raise CutShortError(\n",
        '        if b"MQ1,".startswith(tail):\n            raise FormatError(\n',
        ("tests/test_frames.py::test_a_file_cut_short_is_stored_byte_exact_never_as_its_frames_so_far[mib]",),
    ),
    Mutant(
        "mib-short-of-its-hdr-stored-as-frames",
        "a 4D-STEM MIB with fewer frames than its .hdr counts is stored as a short (t, y, x) movie, nothing said",
        "acqd/readers/mib.py",
        "    if stated is not None and stated[1] > n:",
        "    if False:",
        ("tests/test_frames.py::test_a_4d_stem_mib_with_fewer_frames_than_its_hdr_counts_is_stored_byte_exact",),
    ),
    Mutant(
        "tiff-pixels-past-end-quarantined",
        "a TIFF whose pixel data runs past its end (no writer) is quarantined: its only copy stays on the"
        " acquisition disk",
        "acqd/readers/tiff.py",
        "        if ends and max(ends) > size:\n            raise CutShortError(",
        "        if ends and max(ends) > size:\n            raise FormatError(",
        ("tests/test_frames.py::test_a_file_cut_short_is_stored_byte_exact_never_as_its_frames_so_far[tiff]",),
    ),
    Mutant(
        "once-silent-on-held-files",
        "`run --once --release` keeps a file a process still writes and exits 0 without naming it",
        "acqd/daemon.py",
        "                held = pipeline.held_for_writers() if self.once else []\n",
        "                held = []\n",
        ("tests/test_release.py::test_once_names_a_file_a_writer_still_holds_and_exits_1",),
    ),
    Mutant(
        "s3-keys-below-an-object-refused",
        "an S3 tier refuses a folder's files below a stored file of the same name (a conflict) though a bucket"
        " keeps keys below an object",
        "acqd/storage/s3.py",
        "    folders = False  # keys below an object are stored ('sess/run1' and 'sess/run1/x.mrc')\n",
        "",
        ("tests/test_retention_deletes.py::test_an_s3_purge_of_a_file_never_deletes_the_copies_stored_below_its_name",),
    ),
    Mutant(
        "compressed-tiff-rewritten-by-default",
        "a compressed TIFF is read as frames and compressed again by default: a restore gives back its pixels and"
        " tags, not its bytes, and the release deletes the only copy of them",
        "acqd/readers/tiff.py",
        '        if options.get("compressed_tiff", "byte-exact") != "frames":\n',
        "        if False:\n",
        ("tests/test_frames.py::test_a_compressed_tiff_is_stored_byte_exact_and_restored_byte_for_byte",),
    ),
    Mutant(
        "pages-of-two-pixel-sizes-stacked",
        "a TIFF whose pages have different pixel sizes is stored as one stack under page 0's scale, the other"
        " pages' calibration lost",
        "acqd/readers/tiff.py",
        "        if res and res0 and (res != res0 or int(p.resolutionunit) != int(first.resolutionunit)):\n",
        "        if False:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "uncomparable-held-file-kept-for-ever",
        "a held file whose content cannot be compared with its copy is kept for ever (and read again at every"
        " look), not shipped again",
        "acqd/pipeline.py",
        "        if digest is None:\n"
        '            why = f"held for a writer after it was shipped, and {unread}: kept; shipped again as a new'
        ' version"\n',
        "        if digest is None:\n            return False\n",
        ("tests/test_release.py::test_a_held_file_whose_content_cannot_be_compared_ships_again_never_kept_for_ever",),
    ),
    Mutant(
        "cut-short-released",
        "a file shorter than its own format says, stored byte-exact, is released after its hold: a writer acqd"
        " cannot see finds it gone",
        "acqd/pipeline.py",
        "        if row.id in await self._j(self.journal.cut_short, [row.id]):\n",
        "        if False:\n",
        ("tests/test_release.py::test_a_movie_cut_short_is_stored_and_never_released_until_it_grows",),
    ),
    Mutant(
        "batch-read-under-writer-unnoted",
        "small files read in a batch while a writer has them open are not noted: their content is not compared"
        " before release",
        "acqd/pipeline.py",
        "        if freed:  # read while a process has them open for writing: compared before any release (one scan)\n",
        "        if False:\n",
        ("tests/test_release.py::test_once_names_a_file_a_writer_still_holds_and_exits_1",),
    ),
    Mutant(
        "tier-moved-in-unknown-by-identity",
        "a tier's folder moved into the watch root, nothing or a new folder left at its path: its copies are taken"
        " for new files to ship",
        "acqd/pipeline.py",
        "        found = [f for f in moved_below(root, rels, moved) if f not in fences]\n",
        "        found = []\n",
        (
            "tests/test_safeguards.py::test_a_tier_moved_into_the_watch_root_while_running_is_not_shipped_into_itself"
            "[nothing]",
        ),
    ),
    Mutant(
        "folder-with-a-tiers-old-identity-fenced-without-claim",
        "a folder of the watch root with the identity of a tier's folder deleted before (its inode reused) is"
        " fenced off without a claim in it: an acquisition folder never shipped",
        "acqd/pipeline.py",
        "        fences += [f for f in found if glob.glob(os.path.join(glob.escape(os.path.join(root, f)),"
        ' "*", CLAIM))]\n',
        "        fences += found\n",
        ("tests/test_safeguards.py::test_a_tier_folder_is_known_by_identity_only_while_it_holds_a_claim",),
    ),
    Mutant(
        "ome-positions-stacked",
        "an OME-TIFF of several images (stage positions), one plane each, is stored as one z stack of them",
        "acqd/readers/tiff.py",
        "    if apart or (ome and count > 1):  # positions, time points or channels kept as series of their own\n",
        "    if apart:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "metadata-uncounted-pages-stacked",
        "pages OME-XML or ImageJ's description does not count as planes (an overview) are stored as"
        " planes of the stack",
        "acqd/readers/tiff.py",
        "    if described and count == 1 and planes < n:  # an overview, a thumbnail: pages that are not planes\n",
        "    if False:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "metadata-plane-order-ignored",
        "a TIFF whose metadata puts its planes on the pages in another order is stored as its"
        " pages in file order (the stack upside down)",
        "acqd/readers/tiff.py",
        "    if described and order != list(range(n)):  # its planes in another order than its pages\n",
        "    if False:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "miniswhite-stored-as-frames",
        "a MinIsWhite or palette TIFF is stored as frames, its values' meaning lost (written back black is 0)",
        "acqd/readers/tiff.py",
        "        if (tag := p.tags.get(262)) is not None and int(tag.value) != 1:\n",
        "        if False:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "orientation-stored-as-frames",
        "a TIFF whose Orientation shows its rows flipped is stored as frames shown unflipped",
        "acqd/readers/tiff.py",
        "        if (tag := p.tags.get(274)) is not None and int(tag.value) != 1:\n",
        "        if False:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "imagej-missing-resolution-unit-taken-for-inch",
        "an ImageJ description's unit= is overridden by the TIFF's resolution unit (the inch TIFF defaults to"
        " when none is stated): pixel sizes and z steps 10^4 or 25,400 times too large",
        "acqd/readers/tiff.py",
        '            yunit, zunit = length_unit(ij.get("yunit")) or unit, length_unit(ij.get("zunit")) or unit\n',
        '            unit = yunit = zunit = "inch" if runit == 2 else "centimeter" if runit == 3 else unit\n',
        (
            "tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-no-resolution-unit]",
            "tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-inch-nm]",
        ),
    ),
    Mutant(
        "imagej-yunit-zunit-ignored",
        "ImageJ's yunit= and zunit= are ignored: a 65 nm pixel and a 300 nm step taken for um",
        "acqd/readers/tiff.py",
        '            yunit, zunit = length_unit(ij.get("yunit")) or unit, length_unit(ij.get("zunit")) or unit\n',
        "            yunit, zunit = unit, unit\n",
        ("tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-yunit-zunit]",),
    ),
    Mutant(
        "imagej-angstrom-escape-unknown",
        "ImageJ's escaped angstrom (unit=\\u00C5) is no unit: the calibration dropped",
        "acqd/readers/base.py",
        '    "\\\\u00c5": "angstrom",  # ImageJ\'s description escapes the non-ASCII (looked up lower-cased)\n',
        "",
        ("tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-angstrom]",),
    ),
    Mutant(
        "old-style-mrc-quarantined",
        "an MRC older than MRC2000 (no 'MAP ' at byte 208) whose sizes are the file's is quarantined: never backed up",
        "acqd/readers/mrc.py",
        "        if (order := _old_style(raw, size)) is not None:  # readable, not damaged: never left unstored\n",
        "        if False:\n",
        ("tests/test_mismatch.py::test_valid_mrc_modes_no_frame_layout_represents_are_stored_byte_exact",),
    ),
    Mutant(
        "page-tags-changed-dropped",
        "each page's own TIFF tags (a description, a time per plane) are not in the copy's attributes",
        "acqd/readers/tiff.py",
        '        header["page_tags_changed"] = changed\n',
        "        pass\n",
        ("tests/test_ngff.py::test_each_pages_own_tags_are_in_the_copys_metadata_by_name",),
    ),
    Mutant(
        "s3-failed-abort-left-till-next-start",
        "an S3 upload whose abort failed while the server was away is left unfinished (and billed) until the"
        " next start",
        "acqd/storage/s3.py",
        "            self.tier._left_unaborted(self.bucket, self.key, self.upload_id)\n",
        "            pass\n",
        (
            "tests/test_remote_e2e.py::test_an_outage_the_daemon_lives_through_leaves_no_unfinished_upload[s3]",
            "tests/test_remote_e2e.py::test_an_upload_abandoned_in_an_outage_is_aborted_without_a_restart",
        ),
    ),
    Mutant(
        "transition-unverified-copy-left",
        "a transition's new copy that did not verify is left on the new tier, in the name's way of every later move",
        "acqd/retention.py",
        "                await self._io(_drop_made, dst, rel, made, self._tree(row))\n",
        "                pass\n",
        ("tests/test_retention.py::test_transition_never_deletes_an_unverified_copy",),
    ),
    Mutant(
        "interrupted-purge-recorded-missing",
        "a daemon's purge killed between its delete and its record is recorded missing at the next sweep, the file"
        " counted verified with no copy",
        "acqd/retention.py",
        "        return jr.begin_step(self.journal, kind, copy_id)\n",
        "        return False\n",
        (
            "tests/test_retention_deletes.py::"
            "test_a_daemon_killed_after_a_purges_delete_records_the_purge_at_its_next_sweep",
        ),
    ),
    Mutant(
        "warnings-not-carried-by-a-move",
        "a move after the warning leaves the new copy unwarned: a second mail, a later date, the purge put off",
        "acqd/retention.py",
        "        jr.carry_warnings(self.journal, c.id, new)  # the announced purge goes with the file\n",
        "",
        ("tests/test_retention.py::test_a_move_after_the_warning_keeps_the_announced_purge_and_warns_once",),
    ),
    Mutant(
        "hub-warnings-not-carried-by-a-move",
        "a hub's move after the warning leaves the new copy unwarned: a second digest, the purge put off",
        "acqd/hubdb.py",
        "            if row:  # the warnings delivered for the old copy announce the purge of the file: carried\n",
        "            if False:\n",
        ("tests/test_hub.py::test_a_hub_move_after_the_warning_keeps_the_announced_purge",),
    ),
    Mutant(
        "appended-version-released-at-once",
        "a new version that is its last version with more after it (a writer adding parts, closing between them)"
        " is released at once: the next part makes a fragment of its own",
        "acqd/pipeline.py",
        "        appended = (\n            prev.identity.inode == now.inode",
        "        appended = False and (\n            prev.identity.inode == now.inode",
        ("tests/test_robust.py::test_a_version_that_is_its_last_version_with_more_after_it_is_kept_for_the_next_part",),
    ),
    Mutant(
        "unclaimed-tier-recorded-as-where-copies-are",
        "a run given another --dest by mistake records it as where the journal's copies are: status, restore and"
        " verify look for them there",
        "acqd/daemon.py",
        "                    {n: (t.url, dict(t.options)) for n, t in config.tiers.items() if n not in unclaimed},\n",
        "                    {n: (t.url, dict(t.options)) for n, t in config.tiers.items()},\n",
        (
            "tests/test_names.py::"
            "test_a_run_given_another_dest_by_mistake_leaves_the_journal_knowing_where_its_copies_are",
        ),
    ),
    Mutant(
        "interrupted-once-run-exits-0",
        "`run --once --release` stopped by Ctrl-C before its releases exits 0: a script takes the run for done",
        "acqd/daemon.py",
        "                if self.once and self.interrupted is not None:\n",
        "                if False:\n",
        ("tests/test_inprocess.py::test_a_once_run_stopped_by_a_signal_before_its_releases_exits_1",),
    ),
    Mutant(
        "refused-quick-dest-folder-left",
        "a quick-form --dest refused (inside the watch root; an unknown detector, a missing watch folder, an adopt"
        " refused) leaves the folder made for it behind",
        "acqd/cli.py",
        "                    folder.rmdir()\n",
        "                    pass\n",
        (
            "tests/test_config.py::test_a_quick_form_dest_refused_inside_the_watch_root_leaves_no_folder_there",
            "tests/test_config.py::test_a_quick_form_dest_made_for_a_refused_run_is_not_left_behind",
        ),
    ),
    Mutant(
        "adopt-onto-a-mistyped-dest",
        "`acqd adopt` with a --dest that holds none of the journal's copies claims it and records the tier there:"
        " verify calls every copy missing",
        "acqd/claims.py",
        "        if not found.get(name):\n",
        "        if False:\n",
        ("tests/test_names.py::test_adopt_given_another_dest_by_mistake_is_refused_and_a_moved_tier_is_adopted",),
    ),
    Mutant(
        "mib-tiff-rows-as-in-the-file",
        "a .mib in the TIFF layout keeps the file's row order: upside down beside its Zarr copy and rosettasciio",
        "acqd/layouts/frames.py",
        'FLIP_FORMATS = {"mrc", "mib"}\n',
        'FLIP_FORMATS = {"mrc"}\n',
        (
            "tests/test_frames.py::test_mib_frames_in_the_tiff_layout_are_oriented_as_in_the_zarr_layout",
            "tests/test_stream.py::test_movie_is_streamed_while_written",
        ),
    ),
    Mutant(
        "raw-of-odd-size-quarantined",
        "a raw file whose size is not header plus whole frames is quarantined, its only copy left on the"
        " acquisition disk, where a truncated MRC or MIB is stored byte-exact",
        "acqd/readers/raw.py",
        '        raise CutShortError(\n            f"raw size',
        '        raise FormatError(\n            f"raw size',
        ("tests/test_frames.py::test_a_file_cut_short_is_stored_byte_exact_never_as_its_frames_so_far",),
    ),
    Mutant(
        "preallocated-movie-streamed",
        "a movie pre-allocated to its full size is streamed: its zeros are read as frames and the copy is dropped at"
        " completion with a false warning that it was rewritten",
        "acqd/layouts/stream.py",
        "        return full and tail_unwritten(",
        "        return False and tail_unwritten(",
        ("tests/test_stream.py::test_a_preallocated_movie_is_not_streamed_and_ships_whole",),
    ),
    Mutant(
        "release-waits-unrecorded",
        "`acqd status` cannot say why verified files are still on the acquisition disk: the daemon never records"
        " what their releases wait for",
        "acqd/daemon.py",
        '                        await p._j(p.journal.set_meta, RELEASE_WAITING, json.dumps(now) if now else "")\n',
        "                        pass\n",
        ("tests/test_release.py::test_status_says_why_verified_files_are_not_released_yet",),
    ),
    Mutant(
        "release-waits-left-after-stop",
        "a stopped daemon's last releases waiting stay in `acqd status`, as if it still held them back",
        "acqd/daemon.py",
        "                    for key in (RELEASE_WAITING, INCOMPLETE_META, STALLED_META):\n",
        "                    for key in ():\n",
        ("tests/test_release.py::test_status_says_why_verified_files_are_not_released_yet",),
    ),
    Mutant(
        "journal-wait-never-given-up",
        "`run --once` with a journal that takes no writes (the state disk full) never gives up: --retry-for ignored",
        "acqd/pipeline.py",
        "                (c.settled and (c.row.attempts > 0 or c.journal_wait))\n",
        "                (c.settled and c.row.attempts > 0)\n",
        ("tests/test_inprocess.py::test_once_with_a_journal_that_cannot_record_the_files_gives_up_after_retry_for",),
    ),
    Mutant(
        "journal-outage-retried-every-5s",
        "files are tried again every 5 s however long the journal has taken no writes: thousands of failures a minute",
        "acqd/pipeline.py",
        "        delay = min(JOURNAL_RETRY_MAX, max(JOURNAL_RETRY, (now - self._journal_down_since) / 2))\n",
        "        delay = JOURNAL_RETRY\n",
        ("tests/test_pipeline_units.py::test_files_wait_longer_the_longer_the_journal_cannot_be_written",),
    ),
    Mutant(
        "release-check-recovery-across-tiers",
        "a copy re-checked on one tier logs `release-check: recovered` while another tier's copies still cannot be"
        " re-checked before their release",
        "acqd/pipeline.py",
        '            site = f"release-check {c.ctx.placed(row.relpath).tier.name}"\n',
        '            site = "release-check"\n',
        ("tests/test_inprocess.py::test_a_release_check_that_works_on_one_tier_is_not_said_to_recover_another",),
    ),
    Mutant(
        "left-aside-unlisted-in-status",
        "files left under a release's hidden name are said once in the log, never in `acqd status`",
        "acqd/pipeline.py",
        "                    await self._j(self.journal.set_meta, LEFT_ASIDE_META, doc)\n",
        "                    pass\n",
        ("tests/test_robust.py::test_a_file_left_under_a_release_hidden_name_is_said_once_and_left_as_it_is",),
    ),
    Mutant(
        "dev-shm-descriptors-unseen",
        "a writer with a file open under /dev (/dev/shm, a tmpfs mounted there) is not seen: the file is released"
        " while it is written",
        "acqd/openfiles.py",
        '    return link.startswith("/") and not link.startswith(("/proc/", "/sys/"))\n',
        '    return link.startswith("/") and not link.startswith(("/proc/", "/sys/", "/dev/"))\n',
        (
            "tests/test_release.py::test_fdinfo_and_link_parsing",
            "tests/test_release.py::test_a_final_write_through_a_mapping_that_moves_no_time_is_shipped_never_lost",
        ),
    ),
    Mutant(
        "dev-shm-mappings-unseen",
        "a writer with a file in /dev/shm mapped shared and writable is not seen: the file is released while it is"
        " written through the mapping",
        "acqd/openfiles.py",
        'path.startswith((b"/memfd:", b"/SYSV", b"/dev/zero", b"/proc/", b"/sys/"))',
        'path.startswith((b"/memfd:", b"/SYSV", b"/dev/", b"/proc/", b"/sys/"))',
        (
            "tests/test_release.py::test_shared_writable_mappings_are_writers",
            "tests/test_release.py::test_a_final_write_through_a_mapping_while_the_copy_is_made_is_shipped_never_lost",
        ),
    ),
    Mutant(
        "release-waits-crash-leftover-kept",
        "a crashed daemon's last releases waiting stay in `acqd status` under the next daemon, for files released",
        "acqd/daemon.py",
        "        waits: dict[str, int] | None = None  # the releases waiting, by why, as this run last recorded them\n",
        "        waits: dict[str, int] | None = {}  # the releases waiting, by why, as this run last recorded them\n",
        ("tests/test_release.py::test_status_says_why_verified_files_are_not_released_yet",),
    ),
    Mutant(
        "journal-error-restarts-the-stage",
        "a journal error ending a flight restarts the shipping stage and admits its files again at once: twice a"
        " second for as long as the state disk is full",
        "acqd/pipeline.py",
        "        except JournalError as exc:\n            # a journal write failing in an error path",
        "        except ZeroDivisionError as exc:\n            # a journal write failing in an error path",
        (
            "tests/test_inprocess.py::"
            "test_a_journal_error_in_a_release_waits_for_the_journal_without_restarting_a_stage",
        ),
    ),
    Mutant(
        "dev-device-mapping-matched-by-inode",
        "a device mapped under /dev (a frame grabber's) holds back the release of any file on an anonymous device"
        " (tmpfs, btrfs) whose inode number is the device node's",
        "acqd/openfiles.py",
        "and not dev_path for m, _n, i, dev_path in mapped)",
        "for m, _n, i, dev_path in mapped)",
        ("tests/test_release.py::test_shared_writable_mappings_are_writers",),
    ),
    Mutant(
        "once-exits-0-with-journal-failing",
        "`run --once` whose last journal writes failed (releases made, not recorded) exits 0, the summary saying"
        " nothing was released",
        "acqd/daemon.py",
        "                if self.once and pipeline.journal_failing and code == 0:\n",
        "                if False:\n",
        ("tests/test_inprocess.py::test_once_whose_journal_cannot_record_its_releases_exits_1",),
    ),
    Mutant(
        "interrupted-once-unreleased-unsaid",
        "`run --once --release` stopped before its releases says `0 file(s) pending` and nothing of the verified"
        " files still on the acquisition disk",
        "acqd/daemon.py",
        "if ctx_of[r.root].releases(r.relpath) and os.path.lexists(os.path.join(r.root, r.relpath))",
        "if False",
        ("tests/test_inprocess.py::test_a_once_run_stopped_by_a_signal_before_its_releases_exits_1",),
    ),
    Mutant(
        "second-daemon-on-a-watch-root",
        "a second acqd with a journal of its own on a watch root another acqd watches ships its files too (to"
        " a place the facility does not look) and releases them from under the first",
        "acqd/rootlock.py",
        "        for n, words in (\n"
        '            (_name(_WATCH, real), "is watched by"),\n'
        '            (_name(_INODE, ident), "is watched (by another path) by"),\n'
        "        ):\n",
        "        for n, words in ():\n",
        ("tests/test_safeguards.py::test_one_acqd_per_watch_root_on_a_machine",),
    ),
    Mutant(
        "daemon-inside-a-watched-root",
        "a second acqd on a folder inside another acqd's watch root ships and releases the first's files",
        "acqd/rootlock.py",
        "            if n not in self._own and (h := self._probe(n)) is not None and deferred_to(h[1], own):\n"
        '                return f"lies inside',
        '            if False:\n                return f"lies inside',
        ("tests/test_safeguards.py::test_one_acqd_per_watch_root_on_a_machine",),
    ),
    Mutant(
        "daemon-above-a-watched-root",
        "an acqd started on a folder holding another acqd's watch root ships and releases the other's files (the"
        " other way round it is refused: the outcome hung on which started first)",
        "acqd/rootlock.py",
        "        for n in _markers_below(real):",
        "        for n in []:",
        ("tests/test_safeguards.py::test_one_acqd_per_watch_root_on_a_machine",),
    ),
    Mutant(
        "bind-mounted-root-second-daemon",
        "a second acqd on the same folder reached through a bind mount (another real path) ships its files too",
        "acqd/rootlock.py",
        "            names = [_name(_WATCH, real), _name(_INODE, ident), *",
        "            names = [_name(_WATCH, real), *",
        ("tests/test_safeguards.py::test_one_acqd_per_watch_root_on_a_machine",),
    ),
    Mutant(
        "restore-path-from-here-refused",
        "`acqd restore W/s/a.raw` typed beside the watch root W is refused as never seen, the message offering the"
        " same file's absolute path back",
        "acqd/cli.py",
        "    if below is None or not j.find_versions(below[0], below[1]):\n        return source_path\n",
        "    if True:\n        return source_path\n",
        ("tests/test_cli.py::test_restore_takes_a_stored_copys_path_and_names_files_of_a_bare_name",),
    ),
    Mutant(
        "rewrite-with-times-put-back-unsaid",
        "a file rewritten in place with its size and modification time put back ships as the next version with"
        " no warning (any other change after a file was stored is a WARNING)",
        "acqd/pipeline.py",
        "                if action is Observed.NEW_VERSION:  # said as for any file changed after it was stored",
        "                if False:",
        (
            "tests/test_release.py::"
            "test_a_chmod_or_a_new_link_ships_nothing_again_and_a_rewrite_that_keeps_size_and_mtime_does",
        ),
    ),
    Mutant(
        "ignored-data-files-unnamed",
        "`run --once` exits 0 without a word while files whose names match the ignore globs (a data file named"
        " `~run1.dat`) stay on the disk, never backed up",
        "acqd/watcher.py",
        '                                passed.append(f"{rel_dir}/{de.name}" if rel_dir else de.name)',
        "                                pass",
        ("tests/test_bad_inputs.py::test_once_names_the_files_its_ignore_globs_pass_over",),
    ),
    Mutant(
        "broken-template-ends-retention",
        "a facility's mail template with a Jinja error raises out of the sweep: retention ends for the daemon's"
        " life in silence (no warning, move or purge until a restart)",
        "acqd/retention.py",
        "            except Exception as exc:  # a customised template broken: not sent, as with an SMTP server down",
        "            except ZeroDivisionError as exc:",
        (
            "tests/test_retention.py::test_a_broken_mail_template_holds_the_purges_"
            "and_says_so_and_never_stops_retention",
        ),
    ),
    Mutant(
        "unexpected-sweep-error-ends-retention",
        "any error out of a sweep that is not acqd's own ends the daemon's retention task in silence",
        "acqd/daemon.py",
        "                except Exception as exc:  # never the end of retention for the daemon's life (a silent stop)",
        "                except ZeroDivisionError as exc:",
        ("tests/test_retention.py::test_an_unexpected_error_in_a_sweep_does_not_end_the_daemons_retention",),
    ),
    Mutant(
        "broken-template-unchecked",
        "`acqd check` says nothing of a facility's mail template that cannot be rendered",
        "acqd/daemon.py",
        "            if (broken := Digests().problem(time.time())) is not None:\n",
        "            if (broken := None) is not None:\n",
        ("tests/test_retention.py::test_check_says_a_broken_mail_template_holds_the_purges",),
    ),
    Mutant(
        "top-level-file-hold-command-refused",
        "a file at the top of a watch root is warned about as session `.`, its mail's `acqd hold .` refused",
        "acqd/retention.py",
        '                top = "/" not in row.file.relpath',
        "                top = False",
        ("tests/test_retention.py::test_the_hold_command_for_a_file_at_the_top_of_a_watch_root_works_as_pasted",),
    ),
    Mutant(
        "reload-restart-only-keys-unsaid",
        "a reload that changes smtp, mqtt, metrics or the instrument says `reloaded configuration` and goes on"
        " with the old ones (warnings to the old mail server)",
        "acqd/daemon.py",
        "        if fixed := [k for k in RESTART_ONLY if getattr(new, k) != getattr(self.config, k)]:",
        "        if fixed := []:",
        ("tests/test_inprocess.py::test_a_reload_without_a_policy_applies_the_new_detector_and_placement",),
    ),
    Mutant(
        "watch-root-name-squatted",
        "any user's process holding a watch root's one-acqd name (or `/`'s) makes the facility's daemon wait for"
        " it for ever, the acquisition disk filling",
        "acqd/rootlock.py",
        "    return uid == 0 or uid == own or (own == 0 and uid < SYSTEM_UID_MAX)",
        "    return True",
        ("tests/test_safeguards.py::test_a_watch_roots_name_held_by_another_users_process_does_not_stop_the_daemon",),
    ),
    Mutant(
        "restore-ambiguous-path-guessed",
        "`acqd restore a.raw` typed in a session folder restores the watch root's top-level a.raw, not the one"
        " beside the user, without a word",
        "acqd/cli.py",
        "    if not there or {(r.root, r.relpath) for r in there} == {(below[1], below[0])}:",
        "    if True:",
        ("tests/test_cli.py::test_restore_takes_a_stored_copys_path_and_names_files_of_a_bare_name",),
    ),
    Mutant(
        "template-check-one-branch",
        "`acqd check` renders a sample digest only with owner-page links: a template broken where none is given"
        " (every digest of a daemon without `owner_page:`) passes",
        "acqd/notify.py",
        '            ([], [], []),\n            (link, [], []),\n            ([], ["carol"], ["bob"]),\n',
        "            (link, [], []),\n",
        ("tests/test_retention.py::test_check_says_a_broken_mail_template_holds_the_purges",),
    ),
    Mutant(
        "reload-takes-unapplied-keys",
        "a reload takes the restart-only keys it did not apply as running: the next reload compares with them"
        " (reverting says it changed), the metrics take the new instrument's label",
        "acqd/daemon.py",
        "            new = new.model_copy(update={k: getattr(self.config, k) for k in fixed})",
        "            pass",
        ("tests/test_inprocess.py::test_a_reload_without_a_policy_applies_the_new_detector_and_placement",),
    ),
    Mutant(
        "hold-command-name-read-as-option",
        "the digest's hold command for a session named `-x` is refused: the name is read as an option",
        "acqd/retention.py",
        '        if session.startswith("-"):  # a name that would be read as an option: after `--`',
        "        if False:",
        ("tests/test_retention.py::test_a_hold_command_for_a_name_like_an_option_works_as_pasted",),
    ),
    Mutant(
        "status-crashes-on-a-recovered-retry",
        "`acqd status` lists a file that failed and has been stored since (its reason cleared) as retrying, and"
        " crashes with a traceback on its missing reason while a tier recovers",
        "acqd/journal.py",
        'AND attempts > 0 AND reason IS NOT NULL"',
        'AND attempts > 0"',
        ("tests/test_cli.py::test_status_says_each_tiers_copies_and_the_files_retried",),
    ),
    Mutant(
        "once-retries-past-retry-for",
        "`run --once --retry-for` never ends while a destination is down whose attempts take long to fail: two"
        " files out of step always leave one in flight",
        "acqd/pipeline.py",
        "                    if spent and c.row.attempts > 0 and c.settled:\n                        continue\n",
        "                    if False:\n                        continue\n",
        ("tests/test_remote_hang.py::test_once_gives_up_after_retry_for_while_the_s3_server_is_down",),
    ),
    Mutant(
        "lost-answer-uploads-kept",
        "unfinished multipart uploads a lost answer left (a stalled server executing the client's retries) are"
        " kept, and billed, until the daemon's next start",
        "acqd/storage/s3.py",
        "        self.tier._sweep_key(self.bucket, self.key)\n",
        "        pass\n",
        ("tests/test_remote_hang.py::test_an_unfinished_upload_a_lost_answer_left_is_aborted_once_the_file_is_stored",),
    ),
    Mutant(
        "unfilled-movie-released",
        "an MRC movie of its header's size whose last bytes are zeros (pre-allocated, its writer pausing) is"
        " released once verified: the writer's next frame finds no file",
        "acqd/pipeline.py",
        "        if await self._io(_unfilled_movie, path):\n",
        "        if False:\n",
        (f"{SAFE}::test_preallocated_movies_whose_writer_pauses_are_never_released_before_they_are_filled[t-movie]",),
    ),
    Mutant(
        "batch-unfilled-movie-released",
        "a batch of releases takes MRC movies whose last bytes are zeros (pre-allocated) for plain files",
        "acqd/pipeline.py",
        "                    unfilled = st is not None and st.st_size > 1024 and _unfilled_movie(path)\n",
        "                    unfilled = False\n",
        (f"{SAFE}::test_preallocated_movies_whose_writer_pauses_are_never_released_before_they_are_filled[generic]",),
    ),
    Mutant(
        "merlin-hdr-released-alone",
        "Merlin's .hdr is released before its .mib comes: the scan is stored as a plain stack, a cut-short"
        " .mib is not told",
        "acqd/pipeline.py",
        '        if c.ctx.profile.reader != "mib" or not c.rel.endswith(MIB_HDR):\n            return None\n',
        "        return None\n",
        (f"{SAFE}::test_merlin_hdrs_stay_until_their_mib_is_shipped_and_released",),
    ),
    Mutant(
        "batch-merlin-hdr-released",
        "a batch of releases takes Merlin .hdr files for plain ones (their .mib not released yet)",
        "acqd/pipeline.py",
        '                and not (c.ctx.profile.reader == "mib" and c.rel.endswith(MIB_HDR))  # `_needed_beside`\n',
        "",
        (f"{SAFE}::test_merlin_hdrs_stay_until_their_mib_is_shipped_and_released",),
    ),
    Mutant(
        "merlin-hdr-never-released",
        "a .hdr kept for its .mib is not looked at again once the .mib is released: it stays for good",
        "acqd/pipeline.py",
        "            self._hint_now(c.ctx.index, os.path.join(c.ctx.root, hdr))\n",
        "            pass\n",
        (f"{SAFE}::test_merlin_hdrs_stay_until_their_mib_is_shipped_and_released",),
    ),
    Mutant(
        "resumed-move-takes-last-rowid",
        "a tier move resumed after a crash takes SQLite's last inserted row for its copy: another file's copy,"
        " which then carries this file's warning and is purged unannounced",
        "acqd/journal.py",
        "        return int(found[0])\n",
        '        return int(db.execute("SELECT last_insert_rowid()").fetchone()[0])\n',
        (
            "tests/test_journal.py::test_a_move_resumed_after_a_crash_returns_its_o"
            "wn_copy_and_carries_the_warning_to_it",
        ),
    ),
    Mutant(
        "came-back-after-release-unsaid",
        "a file back under its name soon after its release (a writer adding parts, pausing past the window) is"
        " released again at once and nothing is said: each part a version of its own",
        "acqd/pipeline.py",
        "                    c.grew = appended or gap is not None\n",
        "                    c.grew = appended\n                    gap = None\n",
        ("tests/test_robust.py::test_a_file_that_comes_back_after_its_release_is_said_and_kept_for_the_next_part",),
    ),
    Mutant(
        "came-back-pending-version-unlooked",
        "a file's new version recorded pending soon after its previous version's release (by another path) is"
        " not looked back at: released at once after it ships, the writer's next part a fragment of its own",
        "acqd/pipeline.py",
        "                if action is Observed.NEW_VERSION or (action is Observed.TRACK and row.version > 1):\n",
        "                if action is Observed.NEW_VERSION:\n",
        ("tests/test_robust.py::test_a_version_recorded_pending_soon_after_its_release_is_kept_for_the_next_part",),
    ),
    Mutant(
        "mqtt-url-unchecked",
        "an MQTT URL with a port typo passes `acqd check`; `acqd run` dies of it with a traceback (exit 1, systemd"
        " restarts it for ever, nothing ships)",
        "acqd/config.py",
        '        if u.scheme not in ("mqtt", "tcp") or not u.hostname or port == -1 or port == 0:\n',
        "        if False:\n",
        (
            "tests/test_config.py::test_a_broker_url_acqd_cannot_use_is_refused_by_check_and_run_with_one_line"
            "[mqtt://127.0.0.1:99999]",
        ),
    ),
    Mutant(
        "mailbox-warning-counted-delivered",
        "a warning written to the local mailbox only (no smtp: configured) counts as delivered: files are purged"
        " on their date though no owner was told",
        "acqd/retention.py",
        '            if not getattr(self.mailer, "delivers", True):  # the local mailbox: nobody was told',
        "            if False:  # the local mailbox: nobody was told",
        ("tests/test_retention.py::test_warnings_written_to_the_local_mailbox_only_hold_the_purges_back",),
    ),
    Mutant(
        "ctrl-c-at-start-traceback",
        "Ctrl-C while acqd's modules load prints Python's traceback",
        "acqd/__main__.py",
        "    except KeyboardInterrupt:\n",
        "    except ImportError:\n",
        ("tests/test_cli.py::test_ctrl_c_while_acqd_starts_is_one_line_not_a_traceback",),
    ),
    Mutant(
        "mqtt-pending-uncounted",
        "the event the MQTT sender holds when acqd stops (the broker away) is lost without being counted",
        "acqd/events.py",
        "            left = self._outbox.qsize() + (self._pending is not None)\n",
        "            left = self._outbox.qsize()\n",
        ("tests/test_robust.py::test_events_still_queued_at_a_stop_are_counted_and_said",),
    ),
    Mutant(
        "event-without-root",
        "file events do not name the watch root: two roots holding the same relative path are told apart by nobody",
        "acqd/events.py",
        '            "root": o.root or None,\n',
        '            "root": None,\n',
        ("tests/test_service.py::test_mqtt_released_event_names_the_removed_file",),
    ),
    Mutant(
        "purge-due-moved-first",
        "a copy whose purge is due is moved to another tier first: the purge then finds the old copy gone and"
        " records it missing",
        "acqd/policy/planner.py",
        "        if move is not None:  # its purge is due",
        "        if False:  # its purge is due",
        ("tests/test_policy.py::test_a_copy_whose_purge_is_due_is_purged_where_it_is_not_moved_first",),
    ),
    Mutant(
        "plan-warns-nobody",
        "`acqd plan` lists a warning and a purge date for a file nobody can be warned about (the daemon never"
        " purges it)",
        "acqd/policy/planner.py",
        "        if not recipients:  # nobody to warn",
        "        if False:  # nobody to warn",
        ("tests/test_policy.py::test_a_file_nobody_can_be_warned_about_is_planned_blocked_not_warned",),
    ),
    Mutant(
        "warning-names-the-tier-left",
        "a warning sent in the sweep that moves the data names the tier the data leaves",
        "acqd/retention.py",
        "                on = a.tier if a.tier and a.item.id in (moved or ()) else row.copy.tier\n",
        "                on = row.copy.tier\n",
        ("tests/test_retention.py::test_a_warning_sent_in_the_sweep_that_moves_the_data_names_where_it_will_be",),
    ),
    Mutant(
        "release-wait-age-reset-at-relook",
        "a held release's age goes back to 0 at each of its re-looks: AcqdReleaseWaiting never fires",
        "acqd/pipeline.py",
        "if k not in held and now - last > RELEASE_WAIT_GRACE",
        "if k not in held and now - last >= 0",
        ("tests/test_pipeline_units.py::test_a_held_release_keeps_its_age_across_its_re_looks",),
    ),
    Mutant(
        "stop-drops-streams-unsaid",
        'a stop drops the streams of movies still being written without a word ("finishing files in flight")',
        "acqd/pipeline.py",
        "        if dropped:  # files still being written",
        "        if False:  # files still being written",
        ("tests/test_stream.py::test_a_stop_while_a_movie_is_still_written_says_its_stream_is_not_finished",),
    ),
    Mutant(
        "ready-backlog-counts-files-still-written",
        "the ready backlog (AcqdStalled) counts files still being written: a long acquisition pages as a stall",
        "acqd/pipeline.py",
        "ready_files=sum(c.settled or c.key in self.in_flight for c in pending)",
        "ready_files=len(pending)",
        ("tests/test_pipeline_units.py::test_the_ready_backlog_leaves_out_files_still_being_written",),
    ),
    Mutant(
        "imagej-cm-um-unconverted",
        "an ImageJ stack with ResolutionUnit cm and `unit=um` gets pixels 10^4 times too small (ImageJ reads"
        " them per cm), or with the resolution unit taken for its own, a z step 10^4 times too large",
        "acqd/readers/tiff.py",
        "                    res = (res[0] / 1e4, res[1] / 1e4)\n",
        "                    pass\n",
        ("tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-cm-um]",),
    ),
    Mutant(
        "imagej-72dpi-per-inch",
        "an ImageJ stack at 72 per inch beside `unit=um` gets 1/72 um pixels, where ImageJ shows 1 um",
        "acqd/readers/tiff.py",
        "                    res = (1.0, 1.0)\n",
        "                    pass\n",
        ("tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-72-dpi]",),
    ),
    Mutant(
        "tiff-ifd-loop-unsaid",
        "a TIFF whose chain of IFDs loops back is stored byte-exact under a reason about its pages' series,"
        " not the loop",
        "acqd/readers/tiff.py",
        '    if ended == "loops back":  # damaged: which pages are the stack, readers do not agree; said as it is\n',
        "    if False:\n",
        (
            "tests/test_frames.py::test_a_tiff_whose_pages_are_not_all_its_images_is_stored_byte_exact"
            "[_looped_chain-chain of IFDs loops back after 3 IFD(s)]",
        ),
    ),
    Mutant(
        "reload-drops-running-tiers",
        "a reload without a tier makes the running configuration lack it: the reload that puts it back fails"
        " with a KeyError (half applied, a traceback), and so does every reload after it",
        "acqd/daemon.py",
        '        return new.model_copy(update={"watch": tuple(watch), "tiers": tiers})\n',
        '        return new.model_copy(update={"watch": tuple(watch)})\n',
        ("tests/test_inprocess.py::test_reloads_that_take_a_tier_out_and_put_it_back_keep_reloading",),
    ),
    Mutant(
        "reload-reorders-watch-roots",
        "a reload that lists the watch roots in another order or drops one makes the scanner fail at each"
        " look of a root, and the missing-root gauge name another root; a prefix change applies unsaid",
        "acqd/daemon.py",
        '        return new.model_copy(update={"watch": tuple(watch), "tiers": tiers})\n',
        '        return new.model_copy(update={"tiers": tiers})\n',
        ("tests/test_inprocess.py::test_reloads_that_reorder_or_drop_watch_roots_keep_each_roots_name_and_prefix",),
    ),
    Mutant(
        "reload-fatal-during-start",
        "a SIGHUP while `acqd run` starts (before the daemon's handler) ends it, exit 129, nothing said",
        "acqd/__main__.py",
        "        hold_reloads()\n",
        "        pass\n",
        ("tests/test_service.py::test_a_reload_asked_while_acqd_starts_is_applied_not_fatal",),
    ),
    Mutant(
        "verify-config-tier-moved-recorded",
        "`acqd verify --config` with the tier's URL edited (a migration being prepared, a partial mirror)"
        " records what it finds there: a copy missing from the mirror recorded lost for good",
        "acqd/fixity.py",
        '            url, options = t.url.rstrip("/"), json.loads(json.dumps(dict(t.options), default=str))\n',
        "            return None\n",
        (
            "tests/test_fixity.py::test_verify_with_a_configuration_whose_tier_moved_records_nothing_until_the_daemon"
            "_runs_there",
        ),
    ),
    Mutant(
        "foreign-journal-traceback",
        "another program's SQLite database as journal.sqlite: `status`, `verify` and `restore` end in a traceback",
        "acqd/journal.py",
        '        if not {"files", "copies", "meta"} <= tables:  # said in one line, not a traceback at the first'
        " query\n",
        "        if False:\n",
        (
            "tests/test_cli.py::test_a_journal_that_is_empty_or_not_acqds_is_one_line_not_a_traceback"
            "[command0-foreign-is not an acqd journal (an SQLite database without acqd's tables)]",
        ),
    ),
    Mutant(
        "killed-restore-temporary-kept",
        "the hidden temporary a killed restore left beside OUT (hundreds of MB) is never removed nor said",
        "acqd/fixity.py",
        "                    os.unlink(e.path)\n",
        "                    pass\n",
        ("tests/test_fixity.py::test_restore_removes_the_temporary_a_killed_restore_left",),
    ),
    Mutant(
        "first-sweep-an-interval-after-start",
        "the first retention sweep comes a whole interval after every start: a daemon restarted more often"
        " than its interval (an hour by default) never sweeps",
        "acqd/daemon.py",
        "                    sweeps = self._retention_loop(policy.spec.interval, first)\n",
        "                    sweeps = self._retention_loop(policy.spec.interval, policy.spec.interval)\n",
        ("tests/test_inprocess.py::test_a_restarted_daemon_sweeps_soon_when_its_last_sweep_is_an_interval_old",),
    ),
    Mutant(
        "blocked-why-unsaid",
        'a sweep whose warnings went to the local mailbox only says "N blocked, 0 failed": `acqd status`'
        " does not say why the purges wait",
        "acqd/retention.py",
        "                res.block(NO_SMTP, len(ids))\n",
        "                res.blocked += len(ids)\n",
        ("tests/test_retention.py::test_warnings_written_to_the_local_mailbox_only_hold_the_purges_back",),
    ),
    Mutant(
        "unknown-key-keys-unlisted",
        "a typo in acqd.yaml or a policy is said without the keys its section has",
        "acqd/yamlfile.py",
        '            said = "unknown key (typo?)" + (_known_keys(model, loc[:-1]) or said.partition("?)")[2])\n',
        "            pass\n",
        ("tests/test_config.py::test_an_unknown_key_is_said_with_its_line_and_the_keys_its_section_has",),
    ),
    Mutant(
        "release-recheck-counted-as-backlog",
        "a verified file whose release is re-looked at (its copy re-checked against a server that does not"
        " answer) counts as backlog not yet shipped, and its release's wait as over (AcqdReleaseWaiting never"
        " fires, AcqdStalled does)",
        "acqd/pipeline.py",
        "        pending = [c for c in looked if not c.release_only]\n",
        "        pending = looked\n",
        ("tests/test_pipeline_units.py::test_a_release_looked_at_again_is_no_backlog_and_keeps_its_wait",),
    ),
    Mutant(
        "storage-stall-unsaid",
        "a storage call that a stalled server never answers goes unsaid: no log line, metric or status for"
        " as long as its client retries (19 minutes seen)",
        "acqd/storage/base.py",
        "        UNDER_WAY[token] = (self, op, rel, time.monotonic())  # `stalled_calls` sees it while it lasts\n",
        "        pass\n",
        ("tests/test_remote_hang.py::test_a_stalled_s3_server_is_said_counted_and_shown_while_its_files_wait",),
    ),
    Mutant(
        "s3-zarr-metadata-before-shards",
        "a Zarr commit to S3 copies objects in name order: cut part way, an array's zarr.json is in place"
        " before all its shards (it opens with shards missing)",
        "acqd/storage/s3.py",
        "            for i, k in enumerate(first + meta):\n",
        "            for i, k in enumerate(objects):\n",
        ("tests/test_storage.py::test_an_s3_zarr_commit_copies_every_shard_before_any_metadata_and_the_root_last",),
    ),
    Mutant(
        "incomplete-files-unexplained",
        "`acqd status` shows a file its writer keeps open only as `seen`: the why in the log alone",
        "acqd/pipeline.py",
        "            writer = c.writer_open or self._awaited.get(c.key) == c.row.id\n",
        "            writer = False\n",
        ("tests/test_robust.py::test_status_says_why_a_file_found_is_not_complete_yet",),
    ),
    Mutant(
        "verify-mirror-endpoint-recorded",
        "`acqd verify --config` naming the tier's URL on another endpoint (an S3 mirror of the same bucket"
        " name) records what it finds there: a copy missing from the mirror recorded lost for good",
        "acqd/fixity.py",
        "        if options is not None and options != recorded_options:\n",
        "        if False:\n",
        ("tests/test_fixity.py::test_verify_takes_a_tier_with_other_options_for_another_place",),
    ),
    Mutant(
        "late-claimed-tier-unrecorded",
        "a tier claimed after the start (its share mounted late) keeps its old recorded place: `verify`"
        " records nothing of it until the next restart",
        "acqd/claims.py",
        "                self.on_claimed(tier)\n",
        "                pass\n",
        ("tests/test_fixity.py::test_a_tier_claimed_after_the_start_is_recorded_where_it_is",),
    ),
    Mutant(
        "reload-tier-order-unsaid",
        "a reload that puts the tiers in another order (the first is the roots' default tier) is silently not applied",
        "acqd/daemon.py",
        '            said.append("the order of the tiers (the first is where a watch root\'s files go by default)")\n',
        "            pass\n",
        ("tests/test_inprocess.py::test_reloads_that_take_a_tier_out_and_put_it_back_keep_reloading",),
    ),
    Mutant(
        "reload-before-start-applied-half",
        "a reload asked while acqd starts runs before its retention runner exists: it says a policy was added",
        "acqd/daemon.py",
        "        if not self._started:  # applied once it runs (`_run`)\n",
        "        if False:\n",
        ("tests/test_inprocess.py::test_a_reload_asked_before_the_daemon_runs_is_applied_once_it_does",),
    ),
    Mutant(
        "restore-removes-another-hosts-temporary",
        "a restore removes the temporary of a restore another host (or a container) runs on a shared folder",
        "acqd/fixity.py",
        "            if host != _host():\n",
        "            if False:\n",
        ("tests/test_fixity.py::test_restore_removes_the_temporary_a_killed_restore_left",),
    ),
    Mutant(
        "read-back-failure-counted-as-write",
        "a read-back cut by the network is counted and said as a write's failure",
        "acqd/pipeline.py",
        '            stage = "verify"\n',
        '            stage = "write"\n',
        ("tests/test_inprocess.py::test_a_read_back_that_fails_is_counted_as_the_verify_stage",),
    ),
    Mutant(
        "ome-multifile-part-stored-as-stack",
        "one file of a multi-file OME-TIFF dataset (its OME-XML counts more planes than it holds) is stored as"
        " a stack of its own from z = 0, where its planes are the dataset's later ones",
        "acqd/readers/tiff.py",
        "    if stated is not None and stated > n:  # tifffile, kept to this file, shows its own planes only\n",
        "    if False:\n",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "zarr-scale-infinity-written",
        "an infinite scale (a spacing that overflows in micrometres) is written into zarr.json as `Infinity`,"
        " which is not JSON: tensorstore and browsers refuse the copy",
        "acqd/layouts/frames.py",
        "        return v if v > 0 and math.isfinite(v) else None\n",
        "        return v if v > 0 else None\n",
        ("tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-spacing-overflows]",),
    ),
    Mutant(
        "imagej-unit-pixel-per-resolution-unit",
        "an ImageJ stack that says `unit=pixel` (not calibrated) or a unit acqd does not know gets the"
        " ResolutionUnit's size (12.7 mm pixels for 2 per inch)",
        "acqd/readers/tiff.py",
        '    ij_unit = isinstance(ij, dict) and ij.get("unit") is not None\n',
        "    ij_unit = False\n",
        (
            "tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-unit-pixel]",
            "tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-unit-unknown]",
        ),
    ),
    Mutant(
        "unit-plurals-unknown",
        "a unit spelt in the plural (`unit=nanometers`, as typed into ImageJ) is no unit: the copy has no sizes",
        "acqd/readers/base.py",
        '    **{f"{u}s": u for u in UM_PER_UNIT if u != "inch"},\n',
        "    **{},\n",
        ("tests/test_ngff.py::test_tiff_calibration_carried_never_invented[imagej-unit-plural]",),
    ),
    Mutant(
        "mib-trailing-bytes-called-cut",
        "bytes after a MIB's last whole frame that start no frame are said to be a frame half there",
        "acqd/readers/mib.py",
        '        if b"MQ1,".startswith(tail):  # a frame\'s header begun: the frame is half there\n',
        "        if True:\n",
        ("tests/test_frames.py::test_a_file_cut_short_is_stored_byte_exact_never_as_its_frames_so_far[mib-trailing]",),
    ),
    Mutant(
        "policy-tiers-ignored",
        "a policy acts on copies on every tier of acqd.yaml, not only those its `spec.tiers` names: the only copy"
        " of a released file on an archive tier is warned about and purged",
        "acqd/policy/planner.py",
        "        if it.tier not in managed:  # a tier the policy does not manag"
        "e (an archive, a curated copy): kept as it\n",
        "        if False:\n",
        ("tests/test_policy.py::test_copies_on_a_tier_the_policy_does_not_manage_are_never_warned_moved_or_purged",),
    ),
    Mutant(
        "warning-names-a-failed-moves-tier",
        "a warning sent in a sweep whose move failed names the move's tier, where other bytes are under the names",
        "acqd/retention.py",
        "                on = a.tier if a.tier and a.item.id in (moved or ()) else row.copy.tier\n",
        "                on = a.tier or row.copy.tier\n",
        ("tests/test_retention.py::test_a_warning_sent_in_a_sweep_whose_move_failed_names_where_the_data_is",),
    ),
    Mutant(
        "warning-counts-copies-as-files",
        "a file with copies on two tiers is counted twice in its warning's total and subject",
        "acqd/retention.py",
        "                    files=len(files),\n",
        "                    files=None,\n",
        ("tests/test_retention.py::test_a_file_on_two_tiers_is_counted_once_in_its_warning",),
    ),
    Mutant(
        "gone-copy-move-blames-the-new-tier",
        "a move of a copy gone from its tier fails, at every later sweep, naming only the new tier's path as missing",
        "acqd/retention.py",
        "            except AcqdError as exc:  # said as the copy on the old ti"
        "er gone (only the new tier was named: a review)\n",
        "            except ZeroDivisionError as exc:\n",
        ("tests/test_retention.py::test_a_move_of_a_copy_gone_from_its_tier_says_so",),
    ),
    Mutant(
        "smtp-partial-refusal-delivered",
        "a mail the server took for some recipients and refused for others counts as delivered to all",
        "acqd/notify.py",
        "        if refused:  # some recipients taken, others not: not delivere"
        "d to all it is for (it passed as delivered)\n",
        "        if False:\n",
        ("tests/test_retention.py::test_a_mail_a_server_took_for_some_recipients_only_is_not_delivered",),
    ),
    Mutant(
        "address-list-taken-for-an-address",
        "`alice,bob@x.org` or `<alice@x.org>` passes for an owner's address (a list: one of them warned)",
        "acqd/policy/model.py",
        "    return re.fullmatch(r'[^@\\s,;<>()\\[\\]\"]+@[^@\\s,;<>()\\[\\]\"]+', text) is not None\n",
        '    return re.fullmatch(r"[^@\\s]+@[^@\\s]+", text) is not None\n',
        (
            "tests/test_policy.py::test_an_owners_address_that_is_a_list_or_a_display_name_is_refused",
            "tests/test_policy.py::test_a_notify_entry_that_is_no_recipient_is_refused",
        ),
    ),
    Mutant(
        "owner-page-purge-day-only",
        "the owner page shows a purge's UTC day only: the day before, west of Greenwich, for a purge early in the day",
        "policies/templates/owner-page.html.j2",
        "{% if s.purge_at is not none %}<strong>deleted {{ s.purge_at | moment "
        "}}</strong>{% else %}not deleted{% endif %}\n",
        "{% if s.purge_at is not none %}<strong>deleted {{ s.purge_at | day }}<"
        "/strong>{% else %}not deleted{% endif %}\n",
        ("tests/test_owner_page.py::test_the_page_lists_the_owners_data_only_with_headers",),
    ),
    Mutant(
        "mrc-count-moved-proof-final",
        "a movie whose header's frame count moved between two looks (a writer closing it after every frame) is"
        " complete by its format's proof at once: a version per frame",
        "acqd/pipeline.py",
        "        if (c.header_moved and not c.seen_open) or c.continued:\n",
        "        if c.continued:\n",
        (
            "tests/test_robust.py::test_an_mrc_closed_after_every_frame_a"
            "nd_its_count_rewritten_ships_whole[count-moved-past-the-grace]",
        ),
    ),
    Mutant(
        "proof-grace-skipped",
        "a movie proved complete and closed at its first look, written a moment ago, ships at once: its"
        " first frame a version of its own when its writer closes it after every frame",
        "acqd/pipeline.py",
        "        c.proof_grace = True  # still for PROOF_GRACE (or the window, if shorter): `_settle_one`\n"
        "        return False\n",
        "        return True\n",
        (
            "tests/test_robust.py::test_an_mrc_closed_after_every_frame_a"
            "nd_its_count_rewritten_ships_whole[closed-per-frame]",
        ),
    ),
    Mutant(
        "continued-version-proof-final",
        "a version that is its previous one with more after it is complete by its format's proof at once:"
        " a version per frame past the grace",
        "acqd/pipeline.py",
        "                    c.continued = appended  # its format's proof is not final alone (`_proof_final`)\n",
        "                    c.continued = False\n",
        (
            "tests/test_robust.py::test_an_mrc_closed_after_every_frame_a"
            "nd_its_count_rewritten_ships_whole[pauses-past-the-grace]",
        ),
    ),
    Mutant(
        "foreign-aside-taken-for-shipped",
        "another program's file under a release's hidden name is said to be the shipped file moved aside, its"
        " copy verified, to be removed",
        "acqd/pipeline.py",
        "            if name and inode != st.st_ino:  # not the file the name w"
        "as made for (a rename keeps the inode): another\n",
        "            if False:\n",
        (
            "tests/test_robust.py::test_another_programs_file_under_a_rel"
            "ease_hidden_name_is_never_taken_for_a_shipped_one",
        ),
    ),
    Mutant(
        "blocked-release-unsaid",
        "a release kept because another file holds its hidden name is said nowhere but in the audit",
        "acqd/pipeline.py",
        "        if why != BLOCKED or _remember(self._blocked_said, c.key, row.id):\n",
        "        if True:\n",
        (
            "tests/test_robust.py::test_another_programs_file_under_a_rel"
            "ease_hidden_name_is_never_taken_for_a_shipped_one",
        ),
    ),
    Mutant(
        "verify-unreachable-blames-manifests",
        "`acqd verify` with the server down says every session manifest unreadable and marks each to be written again",
        "acqd/fixity.py",
        "            if any(t in whole for t in places):  # a tier that answers: this manifest cannot be read\n",
        "            if True:\n",
        ("tests/test_remote_network.py::test_verify_with_the_server_unreachable_blames_no_manifest",),
    ),
    Mutant(
        "host-key-changed-add-it",
        'an SFTP server whose host key changed is answered with "add it to known_hosts"',
        "acqd/storage/errors.py",
        '        "host key not trusted: the server\'s key is not in known_hosts, or differs from the one there (a "\n',
        '        "host key not trusted (add it to known_hosts) "\n',
        ("tests/test_remote.py::test_sftp_host_keys_are_checked",),
    ),
    Mutant(
        "s3-credentials-read-once",
        "an S3 tier's credentials file fixed and the daemon reloaded: the old keys are still used",
        "acqd/storage/s3.py",
        "        self._fs = None  # the next request connects with them (requests under way finish with the old)\n",
        "        pass\n",
        ("tests/test_remote.py::test_s3_credentials_file_is_read_again_at_a_reload",),
    ),
    Mutant(
        "earlier-versions-read-as-waiting",
        "`acqd status` counts earlier versions of files written again with the verified files, unsaid",
        "acqd/journal.py",
        '            out["verified"]["earlier_versions"] = int(self._db.execute(q).fetchone()[0])\n',
        '            out["verified"]["earlier_versions"] = 0\n',
        ("tests/test_cli.py::test_status_says_which_verified_files_are_earlier_versions",),
    ),
    Mutant(
        "proof-final-skipped-on-unproved-looks",
        "the settle's rules are not told of the looks that do not prove a movie: a header-first camera's"
        " movie, never seen short, waits 2 s of stillness after its last frame",
        "acqd/pipeline.py",
        "                final = self._proof_final(c, entry.identity, proved, c.writer_open)\n",
        "                final = fmt_ok and self._proof_final(c, entry.identity, proved, c.writer_open)\n",
        ("tests/test_robust.py::test_a_header_first_movie_is_complete_by_its_proof_at_once",),
    ),
    Mutant(
        "warning-filed-under-the-moved-copy",
        "a warning sent in the sweep that moved the file is filed under the copy moved away: the file is"
        " warned again the next day, for a later date",
        "acqd/retention.py",
        "            ids = [(moved or {}).get(i, i) for i in ids]\n",
        "            moved = {}\n",
        ("tests/test_retention.py::test_a_warning_sent_in_the_sweep_that_moves_the_data_names_where_it_will_be",),
    ),
    Mutant(
        "one-tier-takes-every-worker",
        "with more than one tier, one tier's files may take every ship worker: a frozen server's files hold"
        " them all, and a healthy tier's files wait for it",
        "acqd/pace.py",
        "        self.shared = tiers > 1  # one tier alone takes every worker\n",
        "        self.shared = False\n",
        (
            "tests/test_remote_lanes.py::test_a_frozen_s3_server_does_not_hold_up_a_local_tier",
            "tests/test_pace.py::test_one_tier_takes_every_worker_and_with_more_tiers_one_is_left_for_the_others",
        ),
    ),
    Mutant(
        "troubled-tier-takes-as-many",
        "a tier whose last file failed there, or with a call stalled on it, takes as many files as a healthy one",
        "acqd/pace.py",
        "        if stalled or tier in self.failing:\n            return 1\n",
        "        if False:\n            return 1\n",
        ("tests/test_pace.py::test_a_tier_in_trouble_has_one_file_in_flight_until_one_ships",),
    ),
    Mutant(
        "parked-files-never-handed-back",
        "a file parked while its tier had as many in flight as it may is never handed back to the workers",
        "acqd/pipeline.py",
        "        if self.stopping.is_set():\n            return\n        stalled = stalled_tiers(",
        "        if True:\n            return\n        stalled = stalled_tiers(",
        (
            "tests/test_remote_lanes.py::test_a_frozen_s3_server_does_not_hold_up_a_local_tier",
            "tests/test_remote_lanes.py::test_a_frozen_sftp_server_does_not_hold_up_a_local_tier",
        ),
    ),
    Mutant(
        "manifests-of-every-tier-together",
        "the session manifests of every tier written one flush at a time: a frozen tier's manifest holds"
        " up the releases of every other tier",
        "acqd/pipeline.py",
        "        async with self._flush_locks.setdefault(tier, asyncio.Lock()):",
        "        async with self._flush_locks.setdefault('', asyncio.Lock()):",
        ("tests/test_remote_lanes.py::test_a_frozen_s3_server_does_not_hold_up_a_local_tier",),
    ),
    Mutant(
        "looks-on-the-storage-threads",
        "scans and settle looks share the storage calls' threads: while a frozen tier holds them, new files"
        " are not even found",
        "acqd/daemon.py",
        "                    look=look,\n",
        "                    look=io,\n",
        ("tests/test_inprocess.py::test_new_files_are_found_while_every_storage_thread_waits_on_a_tier",),
    ),
    Mutant(
        "budget-held-by-one-tier",
        "one tier's flights may hold the whole in-flight budget (and every frame slot): a frozen tier's hold it"
        " for as long as it does not answer, and a healthy tier's files wait",
        "acqd/pipeline.py",
        "        cap = self.limit if tier is None else self.tier_cap\n",
        "        cap = self.limit\n",
        (
            "tests/test_pipeline_units.py::test_one_tiers_flights_never_hold_the_whole_budget",
            "tests/test_remote_lanes.py::test_a_frozen_s3_server_does_not_hold_up_a_local_tier",
        ),
    ),
    Mutant(
        "flights-counted-on-no-tier",
        "a file's flight takes its bytes and frame slot on no tier's account: a frozen tier's flights hold the"
        " whole budget",
        "acqd/pipeline.py",
        "        tier0 = placed0.tier.name  # its slot",
        "        tier0 = None  # its slot",
        ("tests/test_remote_lanes.py::test_a_frozen_s3_server_does_not_hold_up_a_local_tier",),
    ),
    Mutant(
        "stop-waits-for-a-frozen-manifest",
        "a stop's last session-manifest flush waits for ever on a destination that stopped answering",
        "acqd/daemon.py",
        "MANIFEST_STOP_SECONDS = 15.0",
        "MANIFEST_STOP_SECONDS = 1e9",
        ("tests/test_remote_hang.py::test_sigterm_while_a_manifest_write_hangs_stops_and_the_next_start_writes_it",),
    ),
    Mutant(
        "parked-files-kept-across-a-reload",
        "a reload that places parked files on another tier leaves them parked behind the old one",
        "acqd/daemon.py",
        "        pipeline.relane()  # files parked",
        "        pass  # files parked",
        ("tests/test_inprocess.py::test_a_reload_that_places_parked_files_elsewhere_ships_them_there",),
    ),
    Mutant(
        "backoff-slots-held-by-a-stalled-tier",
        "while acqd backs off for the camera, a stalled tier's files keep the slots: no other tier's file ships",
        "acqd/pipeline.py",
        "            held -= sum(n for t, n in self.by_tier.items() if t in stalled)\n",
        "            held -= 0\n",
        ("tests/test_pipeline_units.py::test_a_backoffs_slots_held_by_a_stalled_tiers_files_count_no_more",),
    ),
    Mutant(
        "pre-allocated-movie-proved-complete",
        "an MRC movie of its header's size is complete by its format though its last bytes are a"
        " pre-allocated file's zeros: a version shipped per look or per pause of its writer",
        "acqd/pipeline.py",
        "                        fmt_ok = c.announced_now == size and not tail_unwritten(read, size)\n",
        "                        fmt_ok = c.announced_now == size\n",
        (
            f"{SAFE}::test_a_pre_allocated_movie_filled_frame_by_frame_ships_once[held-open-pausing]",
            f"{SAFE}::test_a_pre_allocated_movie_filled_frame_by_frame_ships_once[closed-between-frames]",
        ),
    ),
    Mutant(
        "unstreamed-movie-writer-not-awaited",
        "a movie its format says is not complete, not streamed, whose writer here pauses longer than the"
        " settle window ships the part written as a version of its own",
        "acqd/pipeline.py",
        '        if profile.settle.format != "none" and profile.is_frames(c.rel.rpartition("/")[2]):\n',
        "        if False:\n",
        (f"{SAFE}::test_a_pre_allocated_movie_filled_frame_by_frame_ships_once[held-open-not-streamed]",),
    ),
    Mutant(
        "byte-budget",
        "the byte budget bypassed (ships do not reserve their memory)",
        "acqd/pipeline.py",
        "        reserved = await self.budget.acquire(self._memory_for(c, placed0.layout, placed0.tier), tier0)\n",
        "        reserved = 0\n",
        (f"{FAULTS}::test_byte_budget_bounds_concurrent_ships",),
    ),
    Mutant(
        "byte-budget-wait",
        "the byte budget never waits",
        "acqd/pipeline.py",
        "            await self._cond.wait_for(\n"
        "                lambda: self.used + n <= self.limit"
        " and (tier is None or self.by_tier.get(tier, 0) + n <= cap)\n"
        "            )\n",
        "",
        (
            "tests/test_pipeline_units.py::test_byte_budget_never_exceeds_its_limit",
            f"{FAULTS}::test_byte_budget_bounds_concurrent_ships",
        ),
    ),
    Mutant(
        "stale-temp-cleanup",
        "the stale-temporary cleanup at start removed",
        "acqd/pipeline.py",
        "                if await self._io(ctx.placed(row.relpath).tier.remove_temp, self._dest(ctx, row)):\n",
        "                if False:\n",
        (f"{SAFE}::test_temporary_of_a_vanished_file_is_removed_at_start",),
    ),
    Mutant(
        "replace-on-publish",
        "a file tier's publish replaces an object already under the name (os.replace)",
        "acqd/storage/base.py",
        "            else:\n                rename_noreplace(tmp, final)\n",
        "            else:\n                os.replace(tmp, final)\n",
        ("tests/test_names.py::test_an_object_acqd_did_not_write_is_never_replaced",),
    ),
    Mutant(
        "no-escape",
        "a '~' in a source name is not doubled (decorated and real names can meet)",
        "acqd/naming.py",
        "    return component.replace(MARK, MARK + MARK)\n",
        "    return component\n",
        ("tests/test_names.py::test_versions_never_land_on_real_names",),
    ),
    Mutant(
        "claim-ignored",
        "a destination prefix claimed by another daemon or journal is written to anyway",
        "acqd/claims.py",
        "    if not there.same_owner(claim) or there.foreign_run(claim, runs):\n        raise refused(",
        "    if False:\n        raise refused(",
        ("tests/test_names.py::test_two_daemons_never_share_a_destination",),
    ),
    Mutant(
        "journal-loss-unnoticed",
        "a journal replaced while the daemon runs goes unnoticed",
        "acqd/journal.py",
        "        if (st.st_dev, st.st_ino) != self._identity:\n",
        "        if False:\n",
        ("tests/test_names.py::test_a_journal_replaced_while_running_stops_shipping",),
    ),
    Mutant(
        "release-despite-writer",
        "a file still open for writing is released",
        "acqd/pipeline.py",
        "        writing = await self.writers.writers([(st.st_dev, st.st_ino)])\n",
        "        writing: dict[object, set[int]] = {}\n",
        ("tests/test_release.py::test_an_open_multipage_file_is_shipped_as_it_grows_and_released_only_after_close",),
    ),
    Mutant(
        "release-writer-not-asked-again",
        "the writers are not asked again after the stored copy's re-check, right before the unlink",
        "acqd/pipeline.py",
        "        late = await self.writers.writers([(st.st_dev, st.st_ino)])\n",
        "        late: dict[object, set[int]] = {}\n",
        ("tests/test_release.py::test_a_writer_opening_the_file_while_its_copy_is_rechecked_keeps_it",),
    ),
    Mutant(
        "release-no-move-aside",
        "a release unlinks what it moved aside without checking it is the file it looked at",
        "acqd/unlink.py",
        "        if stat.S_ISREG(moved.st_mode) and _same(moved, a.st) and not written:\n",
        "        if not written:\n",
        ("tests/test_release.py::test_a_file_renamed_over_the_name_at_the_moment_of_the_release_is_kept",),
    ),
    Mutant(
        "release-aside-not-put-back",
        "a file a crashed release left under its hidden name is not put back at the next start",
        "acqd/pipeline.py",
        "                    done = await self._io(put_back_aside, row.root, row.relpath, row.identity.inode)\n",
        "                    done = None\n",
        ("tests/test_release.py::test_a_crash_while_a_file_is_moved_aside_for_its_release_puts_it_back",),
    ),
    Mutant(
        "release-left-aside-ended",
        "a release whose file could be neither unlinked nor put back is ended (the file stays hidden for ever)",
        "acqd/unlink.py",
        "        raise LeftAside(exc.errno,",
        "        raise OSError(exc.errno,",
        ("tests/test_release.py::test_a_file_the_release_could_not_put_back_is_put_back_at_the_next_start",),
    ),
    Mutant(
        "hold-records-not-synced",
        "a sweep does not read the holds' records on the tiers (a journal restored from a backup forgets later holds)",
        "acqd/retention.py",
        "        await self.sync_holds()\n",
        "",
        ("tests/test_retention.py::test_a_hold_placed_after_the_journal_backup_survives_its_restore",),
    ),
    Mutant(
        "hold-command-no-record",
        "`acqd hold` keeps the hold in the journal only (no record on the tiers)",
        "acqd/cli.py",
        "markup=False)\n            _hold_records(j, cfg, wait_s)\n",
        "markup=False)\n",
        ("tests/test_retention.py::test_a_hold_placed_after_the_journal_backup_survives_its_restore",),
    ),
    Mutant(
        "other-files-hide-folders",
        "`other_files: ignore` is applied to folder names too (files in session folders are never seen)",
        "acqd/pipeline.py",
        "        return any(self.ignored(d) for d in dirs) or (",
        "        return any(self.skipped_file(d) for d in dirs) or (",
        ("tests/test_names.py::test_other_files_ignore_leaves_the_other_files_and_never_the_folders",),
    ),
    Mutant(
        "hold-release-record-one-tier",
        "a release record on one tier lifts a hold in force (anyone who can write there purges held data)",
        "acqd/holdledger.py",
        "        if everywhere and all(w is not None for w in whens):\n",
        "        if any(w is not None for w in whens):\n",
        ("tests/test_holdledger.py::test_a_release_marker_written_at_the_destination_does_not_lift_a_hold_in_force",),
    ),
    Mutant(
        "hold-records-count-as-data",
        "the claim check of a new tier counts the holds' records as another journal's data",
        "acqd/storage/base.py",
        "                    dirs[:] = [d for d in dirs if d != HOLDS]\n",
        "",
        ("tests/test_holdledger.py::test_hold_records_do_not_make_a_new_tier_look_like_another_daemons_data",),
    ),
    Mutant(
        "warning-stamped-by-lagging-calendar",
        "a warning is dated from the trusted calendar even when it lags the wall clock (after an uncounted power-off)",
        "acqd/policy/clock.py",
        "        return max(self.last.wall, self.calendar)\n",
        "        return self.calendar\n",
        ("tests/test_policy.py::test_a_warning_sent_after_an_uncounted_power_off_keeps_its_full_lead_time",),
    ),
    Mutant(
        "transition-same-storage",
        "a transition does not check that the new tier is not the old one's storage",
        "acqd/retention.py",
        "        if await self._io(dst.shares_storage_with, src, rel):\n",
        "        if False:\n",
        ("tests/test_retention.py::test_a_transition_to_a_tier_over_the_same_storage_never_deletes_the_only_copy",),
    ),
    Mutant(
        "release-without-copy-recheck",
        "a release trusts the stored copy without looking at it again",
        "acqd/pipeline.py",
        "        if not await self._copy_still_there(c, row):\n",
        "        if False:\n",
        ("tests/test_release.py::test_stored_copy_damaged_before_a_held_release_is_shipped_again[truncate]",),
    ),
    Mutant(
        "guard-unserialized",
        "ship workers check and claim the destination at the same time (one sees another's claim half-written)",
        "acqd/claims.py",
        "        with self._lock_of(tier):\n            if fresh:\n                self._checked.pop(tier.name, None)\n"
        "            self._check(tier)\n",
        "        if fresh:\n            self._checked.pop(tier.name, None)\n        self._check(tier)\n",
        ("tests/test_names.py::test_ship_workers_claiming_at_once_claim_once",),
    ),
    Mutant(
        "temporaries-count-as-data",
        "a temporary left by a crash counts as data the journal does not know (the daemon refuses to start)",
        "acqd/storage/base.py",
        "                    if any(not is_temp(name) for name in files):\n",
        "                    if any(True for name in files):\n",
        ("tests/test_names.py::test_a_claim_temporary_left_by_a_crash_is_not_data",),
    ),
    Mutant(
        "catalog-seq-guard",
        "the catalog replaces a row with any state, also an older one (a replay or a late batch)",
        "acqd/catalog.py",
        'WHERE t.seq <= excluded.seq\n"""\n\n_COPY_UPSERT',
        '"""\n\n_COPY_UPSERT',
        ("tests/test_catalog.py::test_replayed_or_late_records_never_double_or_roll_back_a_row",),
    ),
    Mutant(
        "catalog-delete-before-commit",
        "outbox records deleted before PostgreSQL committed them (a refused batch is lost)",
        "acqd/catalog.py",
        "            n = await upsert(conn, self.target, records)\n",
        "            await self.source.done(records[-1].seq, self.status())\n"
        "            n = await upsert(conn, self.target, records)\n",
        ("tests/test_catalog.py::test_a_batch_the_catalog_rejects_stays_in_the_outbox",),
    ),
    Mutant(
        "catalog-outbox-unbounded",
        "the outbox's cap not enforced",
        "acqd/journal.py",
        " AND {_FULL};",
        " AND 0;",
        ("tests/test_catalog.py::test_outbox_records_changes_in_the_journal_transaction_and_stops_at_its_cap",),
    ),
    Mutant(
        "catalog-no-resync",
        "a full outbox is never followed by a resync from the journal's tables",
        "acqd/catalog.py",
        "            if pending and self.depth == 0:\n"
        "                await self._resync(conn)\n                continue\n",
        "",
        ("tests/test_catalog.py::test_full_outbox_keeps_shipping_and_resyncs_when_the_server_returns",),
    ),
    Mutant(
        "catalog-resync-done-early",
        "a resync counts as done once begun (a crash in the middle leaves the catalog short)",
        "acqd/journal.py",
        "since = meta.get(OUTBOX_RESYNC_KEY, meta.get(RESYNC_RUNNING_KEY))",
        "since = meta.get(OUTBOX_RESYNC_KEY)",
        ("tests/test_catalog.py::test_outbox_records_changes_in_the_journal_transaction_and_stops_at_its_cap",),
    ),
    Mutant(
        "catalog-rewound-journal",
        "a journal restored from a backup keeps numbering below the catalog (its new rows and changes are refused)",
        "acqd/journal.py",
        "        if have >= published:\n            return False\n",
        "        return False\n",
        ("tests/test_catalog.py::test_a_journal_restored_from_backup_is_catalogued_as_it_is",),
    ),
    Mutant(
        "catalog-no-statement-timeout",
        "a PostgreSQL that never answers a statement stalls the publisher silently (no error, no retry)",
        "acqd/catalog.py",
        "                    await conn.execute(\"SELECT set_config('statement_timeout', %s, false)\", (ms,))\n",
        "",
        ("tests/test_catalog.py::test_a_server_that_never_answers_a_statement_is_an_error_not_a_stall",),
    ),
    Mutant(
        "catalog-import-rewound-journal",
        "`acqd catalog import` of a journal restored from a backup says it imported what the catalog refused",
        "acqd/catalog.py",
        "        if batch and batch[0].seq < published:\n",
        "        if False:\n",
        ("tests/test_catalog.py::test_a_journal_restored_from_backup_is_catalogued_as_it_is",),
    ),
    Mutant(
        "catalog-url-escaped-password",
        "a password parameter spelled with %-escapes (pass%77ord=) passes the URL check and is logged",
        "acqd/config.py",
        'in unquote(v.partition("?")[2]).lower()',
        'in v.partition("?")[2].lower()',
        ("tests/test_catalog.py::test_a_password_parameter_spelled_with_escapes_is_refused",),
    ),
    Mutant(
        "catalog-no-drain-at-stop",
        "the daemon stops without giving the catalog its last records",
        "acqd/daemon.py",
        "not await self.catalog.drain(CATALOG_DRAIN_SECONDS)",
        "False",
        ("tests/test_catalog.py::test_daemon_publishes_every_file_once_with_its_checksum_and_copy",),
    ),
    Mutant(
        "catalog-adopt-doubles",
        "a new journal's rows for stored objects another journal already catalogued are added beside them",
        "acqd/catalog.py",
        "        await supersede(conn, t, [f[2] for f in files], [c[2] for c in copies])\n",
        "",
        ("tests/test_facility.py::test_a_new_journal_after_adopt_catalogues_each_stored_object_once",),
    ),
    Mutant(
        "catalog-no-heartbeat",
        "an idle publisher never touches its journal's last_contact (a healthy idle instrument looks silent)",
        "acqd/catalog.py",
        "                    await conn.execute(_HEARTBEAT, (self.target.instrument, self.target.journal_id))\n",
        "                    pass\n",
        ("tests/test_facility.py::test_an_idle_publisher_keeps_its_last_contact_fresh",),
    ),
    Mutant(
        "facility-no-statement-timeout",
        "the facility views' queries run without a statement timeout (a locked table hangs a scrape)",
        "acqd/overview/usage.py",
        "        conn.execute(\"SELECT set_config('statement_timeout', %s, false)\", (ms,))\n",
        "",
        ("tests/test_facility.py::test_facility_gauges_survive_a_catalog_that_is_away_or_stuck",),
    ),
    Mutant(
        "facility-plan-caps-per-chunk",
        "the streamed plan applies the purge caps to each chunk instead of the whole sweep",
        "acqd/policy/planner.py",
        "                items_left -= 1\n",
        "",
        (
            "tests/test_facility.py::test_plan_stream_equals_one_plan_over_everything_caps_included",
            "tests/test_hub.py::test_the_hub_sweep_streams_the_catalog_and_never_holds_it",
        ),
    ),
    Mutant(
        "hub-sweep-loads-catalog",
        "the hub's sweep fetches every copy it manages at once instead of batch by batch",
        "acqd/hubdb.py",
        "                while rows := cur.fetchmany(batch):\n",
        "                for rows in [cur.fetchall()]:\n",
        ("tests/test_hub.py::test_the_hub_sweep_streams_the_catalog_and_never_holds_it",),
    ),
    Mutant(
        "fleet-silent-without-backlog",
        "an instrument with nothing waiting is reported silent",
        "acqd/overview/health.py",
        "return self.backlog_files > 0 and (",
        "return (",
        ("tests/test_facility.py::test_hub_fleet_flags_an_instrument_silent_while_files_wait",),
    ),
    Mutant(
        "alert-silent-without-backlog",
        "AcqdInstrumentSilent fires for an instrument that is off with nothing waiting",
        "deploy/prometheus/acqd.rules.yml",
        "          and on (instrument) (max by (instrument) (acqd_fleet_backlog_files) > 0)\n",
        "",
        ("tests/test_service.py::test_promtool_checks_and_tests_the_rules",),
    ),
    Mutant(
        "damaged-tiff-taken-for-unframed",
        "a TIFF cut short is not checked before it is judged valid but not frames (stored as a whole file, its cut"
        " unsaid)",
        "acqd/readers/tiff.py",
        "    _check_whole(every, size)  # the last page's pixels cut off, no page said to follow: damaged\n",
        "",
        ("tests/test_mismatch.py::test_valid_tiffs_no_frame_layout_represents_are_stored_byte_exact_not_quarantined",),
    ),
    Mutant(
        "unframed-quarantined",
        "a valid file no frame layout represents is quarantined as damaged",
        "acqd/readers/mrc.py",
        '        raise UnsupportedFormatError(f"MRC mode {mode}',
        '        raise FormatError(f"MRC mode {mode}',
        ("tests/test_mismatch.py::test_valid_mrc_modes_no_frame_layout_represents_are_stored_byte_exact",),
    ),
    Mutant(
        "fallback-recheck-wrong-codec",
        "a frame placement's zstd byte-exact copy is re-read as uncompressed before a release (lost, shipped again)",
        "acqd/pipeline.py",
        "reading_layout(cp.layout, cp.codec, placed.layout), placed.tier",
        "reading_layout(cp.layout, 'none', placed.layout), placed.tier",
        ("tests/test_mismatch.py::test_byte_exact_copy_of_an_unframed_file_is_released_after_a_full_recheck",),
    ),
    Mutant(
        "stream-compare",
        "a streamed movie is committed without comparing the complete file with what was streamed",
        "acqd/layouts/stream.py",
        "        if again != digest:\n",
        "        if False:\n",
        (
            "tests/test_stream.py::test_earlier_frame_rewritten_falls_back",
            "tests/test_stream.py::test_preallocated_file_falls_back[t-raw]",
        ),
    ),
    Mutant(
        "stream-tiff-plane-unwritten",
        "a growing TIFF's plane is streamed once its IFD is there, before its strips are all written",
        "acqd/layouts/stream.py",
        "        if any(o + c > size for o, c in strips):\n",
        "        if False:\n",
        ("tests/test_stream.py::test_only_frames_written_in_full_are_read[t-planes]",),
    ),
    Mutant(
        "stream-header-compare",
        "a .mib frame header rewritten after it was streamed no longer stops the stream (the copy takes the final one)",
        "acqd/layouts/stream.py",
        "        if kept is not None and restore != kept:\n",
        "        if False:\n",
        ("tests/test_stream.py::test_header_rewritten_falls_back[t-mib]",),
    ),
    Mutant(
        "cancel-swallowed",
        "a nap ends through asyncio.wait_for: on Python 3.11 a cancel that comes as the wake fires is lost "
        "(the ship of a streamed movie waited for its stream to stop, forever)",
        "acqd/aio.py",
        "        async with asyncio.timeout(seconds):\n            await event.wait()\n",
        "        await asyncio.wait_for(event.wait(), seconds)  # noqa: TID251\n",
        ("tests/test_pipeline_units.py::test_a_cancel_as_the_wait_ends_stops_the_task",),
    ),
    Mutant(
        "left-aside-unsaid",
        "a file found under a release's hidden name that no release accounts for is passed over in silence",
        "acqd/pipeline.py",
        "        if aside:  # after the scan's files are admitted: this never holds them up\n",
        "        if aside and False:\n",
        ("tests/test_robust.py::test_a_file_left_under_a_release_hidden_name_is_said_once_and_left_as_it_is",),
    ),
    Mutant(
        "release-begun-unasked",
        "a scan calls a file left aside though its release is begun in the journal (the next start puts it back)",
        "acqd/pipeline.py",
        "                if await self._j(self.journal.release_begun, ctx.root, folder, inode):\n",
        "                if False:\n",
        ("tests/test_release.py::test_a_file_whose_release_is_begun_is_not_said_left_aside_by_the_scans_that_meet_it",),
    ),
    Mutant(
        "aside-by-its-own-inode",
        "a hidden file is looked up by its own inode, not the one its name was made for (a file swapped in at the "
        "release is called left aside)",
        "acqd/pipeline.py",
        "            inode = aside_inode(hidden)  # the name's: the file under it may be another program's new one\n",
        "            inode = None\n",
        ("tests/test_release.py::test_a_file_whose_release_is_begun_is_not_said_left_aside_by_the_scans_that_meet_it",),
    ),
    Mutant(
        "copy-in-watch-root-counted",
        "a copy that lies in a watch root (the destination inside the watch folder, or the other way round) "
        "counts as a copy elsewhere, and its source is released",
        "acqd/pipeline.py",
        "        return next((c.root for c in self.roots if lies_within(path, c.root)), None)\n",
        "        return next((c.root for c in [] if lies_within(path, c.root)), None)\n",
        ("tests/test_release.py::test_a_copy_that_lies_in_the_watch_root_never_releases_its_source",),
    ),
    Mutant(
        "tier-in-watch-root-accepted",
        "a configuration whose central storage is inside a watch root (found by a symlink) is accepted",
        "acqd/daemon.py",
        "    check_apart(config, tiers)\n",
        "    pass\n",
        ("tests/test_config.py::test_an_overlap_hidden_by_a_symlink_is_refused_by_check_and_run",),
    ),
    Mutant(
        "tiff-extra-bytes-dropped",
        "a compressed TIFF with bytes that are neither pixels nor tags (a vendor block) is written again from "
        "pixels and tags, and those bytes are lost",
        "acqd/readers/tiff.py",
        "        if found:  # a rewrite from pixels and tags would lose them: byte-exact instead\n",
        "        if False:\n",
        ("tests/test_fidelity.py::test_a_compressed_tiff_with_bytes_beyond_pixels_and_tags_is_stored_byte_exact",),
    ),
    Mutant(
        "tracker-round-lost",
        "one file's failing look ends the tracker's round: the files after it are never looked at again",
        "acqd/pipeline.py",
        "            except Exception as exc:\n                # one file's error must not lose",
        "            except ZeroDivisionError as exc:\n                # one file's error must not lose",
        ("tests/test_inprocess.py::test_a_look_that_fails_loses_no_other_file_of_its_round",),
    ),
    Mutant(
        "admissions-overlap",
        "two admissions of the same new file run at once: a late, stale journal answer is acted on",
        "acqd/pipeline.py",
        "            async with self._admitting:\n                await self._admit_now(ctx, list(entries))\n",
        "            await self._admit_now(ctx, list(entries))\n",
        ("tests/test_inprocess.py::test_a_file_admitted_twice_at_once_is_shipped_once",),
    ),
    Mutant(
        "admit-in-flight-again",
        "an admission whose file went in flight while the journal was asked makes a second candidate",
        "acqd/pipeline.py",
        "            if key in self.candidates or key in self.in_flight:\n",
        "            if False:\n",
        ("tests/test_inprocess.py::test_a_file_admitted_twice_at_once_is_shipped_once",),
    ),
    Mutant(
        "shipped-row-retried",
        "a candidate whose row another flight verified is retried for ever instead of dropped",
        "acqd/pipeline.py",
        "        if row is None or row.state not in DONE:\n",
        "        if True:\n",
        ("tests/test_inprocess.py::test_a_file_admitted_twice_at_once_is_shipped_once",),
    ),
    Mutant(
        "flight-error-drops-file",
        "a flight that ends in an error lands its files with nothing looking at them again",
        "acqd/pipeline.py",
        "            self._rehint.update(c.key for c in (item if isinstance(item, list) else [item]))\n",
        "            pass\n",
        (
            "tests/test_inprocess.py::test_a_flight_that_ends_in_an_error_leaves_its_file_to_the_journal",
            "tests/test_inprocess.py::test_an_error_in_a_batchs_releases_does_not_drop_the_files_left_to_ship_alone",
        ),
    ),
    Mutant(
        "readmission-not-busy",
        "a file landed and being admitted again, or looked at afresh, counts as idle: `--once` stops before it is"
        " shipped",
        "acqd/pipeline.py",
        "        self._busy += 1\n        try:\n            yield\n        finally:\n            self._busy -= 1\n",
        "        yield\n",
        (
            "tests/test_inprocess.py::test_once_does_not_end_while_a_changed_file_is_admitted_again",
            "tests/test_names.py::test_once_is_not_idle_while_a_file_is_looked_at_afresh[replaced]",
        ),
    ),
    Mutant(
        "delete-recursive-by-backend",
        "a copy is deleted as a tree whenever the backend calls its name a folder"
        " (S3: a file's name can be a prefix too)",
        "acqd/storage/base.py",
        "            if tree:\n                self._rm_tree(path)\n",
        "            if fs.isdir(path):\n                self._rm_tree(path)\n",
        ("tests/test_retention_deletes.py::test_an_s3_purge_of_a_file_never_deletes_the_copies_stored_below_its_name",),
    ),
    Mutant(
        "purge-replaced-object",
        "a purge deletes whatever object is under the copy's name, not only the copy it verified",
        "acqd/retention.py",
        "        changed = await self._io(self._still_the_copy, tier, row)\n",
        "        changed = None\n",
        ("tests/test_retention_deletes.py::test_a_purge_never_deletes_an_object_that_replaced_the_verified_copy",),
    ),
    Mutant(
        "transition-resume-dropped",
        "a daemon's transition killed after its delete is never resumed (the journal's record of the step begun,"
        " and the new copy there, both unheeded): never recorded, failing at every sweep",
        "acqd/retention.py",
        "        if not await self._io(src.exists, rel) and (resumed or await self._io(dst.exists, rel)):\n",
        "        if False:\n",
        (
            "tests/test_retention_deletes.py::test_a_daemon_killed_after_a_transiti"
            "ons_delete_records_the_move_at_its_next_sweep",
        ),
    ),
    Mutant(
        "adopt-foreign-dest",
        "`acqd adopt` imports manifest entries whose copy lies outside the instrument's prefix",
        "acqd/claims.py",
        "    fits = [e for e in entries if _adoptable(e, claim.instrument)]\n",
        "    fits = entries\n",
        ("tests/test_retention_deletes.py::test_acqd_adopt_never_records_a_copy_outside_the_instruments_prefix",),
    ),
    Mutant(
        "tier-path-escape",
        "a tier follows a name with `..` or an absolute name out of its location",
        "acqd/storage/base.py",
        '        if rel.startswith("/") or ".." in rel.split("/"):\n',
        "        if False:\n",
        ("tests/test_retention_deletes.py::test_a_tier_refuses_a_name_that_leaves_its_location",),
    ),
    Mutant(
        "hub-adopts-daemon-owned",
        "the hub takes in the copies of a daemon that keeps retention itself (and ignores its holds)",
        "acqd/hubdb.py",
        "                \" AND j.retention_owner = 'hub'\"\n",
        '                ""\n',
        ("tests/test_hub.py::test_a_hold_in_a_daemons_journal_keeps_its_session_from_the_hub_too",),
    ),
    Mutant(
        "tiff-ifd-loop-followed",
        "a TIFF whose IFD chain comes back is followed by the stream for ever (a wedged ship, unbounded memory)",
        "acqd/layouts/stream.py",
        "            if ifd in self.ifds:",
        "            if False:",
        ("tests/test_stream.py::test_a_looping_ifd_chain_is_refused_by_the_growth_reading_at_once",),
    ),
    Mutant(
        "adopt-trusts-size-and-mtime",
        "`acqd adopt` takes a source of the same size and mtime for its shipped copy (a rewrite in place is released)",
        "acqd/claims.py",
        "journal.adopt_manifest(root, name, fits, _proven(root, fits, stat))",
        "journal.adopt_manifest(root, name, fits, stat)",
        (
            "tests/test_names.py::test_adopt_never_releases_a_file_rewritten_since_"
            "its_copy_on_the_strength_of_size_and_mtime",
        ),
    ),
    Mutant(
        "restore-guesses-the-root",
        "`acqd restore` of a relative path below two watch roots restores one of them without a word",
        "acqd/cli.py",
        "    if root is None and len(roots) > 1:\n",
        "    if False:\n",
        ("tests/test_fixity.py::test_restore_of_a_relative_path_two_watch_roots_share_is_refused_not_guessed",),
    ),
    Mutant(
        "claim-epoch-ignored",
        "a journal restored from a backup (a claim names a run of it that it never made) is let start",
        "acqd/claims.py",
        "    if not there.same_owner(claim) or there.foreign_run(claim, runs):\n",
        "    if not there.same_owner(claim):\n",
        (
            "tests/test_names.py::test_a_journal_restored_from_a_backup_is_refused_until_adopt",
            "tests/test_names.py::test_a_stale_journal_started_while_its_tier_is_down_stays_refused",
            "tests/test_names.py::test_a_failed_adopt_leaves_the_tiers_it_did_not_adopt_refused",
        ),
    ),
    Mutant(
        "refused-start-counts-a-run",
        "a run is not recorded before its claims are written (the next start takes its own claim for a copy's)",
        "acqd/claims.py",
        "    count_run()\n    for name, there in looked.items():\n",
        "    for name, there in looked.items():\n",
        ("tests/test_names.py::test_a_journal_restored_from_a_backup_is_refused_until_adopt",),
    ),
    Mutant(
        "claim-run-unchecked",
        "a running daemon whose claim now names another run of its journal (a copy) goes on writing",
        "acqd/claims.py",
        "        if there is not None and there.same_owner(self.claim) and not there.same_run(self.claim):\n",
        "        if False:\n",
        ("tests/test_names.py::test_a_copy_of_a_running_daemons_state_folder_never_writes_beside_it",),
    ),
    Mutant(
        "restore-into-watch-root",
        "`acqd restore` writes into a watch folder unasked (the daemon ships it again and deletes it there)",
        "acqd/cli.py",
        "            if watched is not None and not into_watch_root:\n",
        "            if False:\n",
        ("tests/test_fixity.py::test_restore_into_a_watch_folder_is_refused_unless_asked_for",),
    ),
    Mutant(
        "purge-recheck-size-only",
        "a purge's re-check of the object looks at its size alone (an object of that size that replaced the copy"
        " is deleted)",
        "acqd/retention.py",
        "        return check_copy(tier, self._layout(row), row.copy, full=False, just_verified=True).problem\n",
        "        return None if self._tree(row) or tier.size(rel) == row.copy.stored_bytes else 'another size'\n",
        (
            "tests/test_retention_deletes.py::"
            "test_an_s3_purge_never_deletes_an_object_of_the_same_size_that_replaced_the_copy",
        ),
    ),
    Mutant(
        "retention-transition-unguarded",
        "a retention transition does not look at the tiers' claims: a capacity share unmounted under the daemon"
        " is filled on the local disk and the central copies deleted",
        "acqd/retention.py",
        "        await self._still_ours(src, dst)\n        rel = row.copy.dest\n",
        "        rel = row.copy.dest\n",
        ("tests/test_retention_deletes.py::test_retention_never_moves_onto_or_forgets_copies_on_an_unmounted_share",),
    ),
    Mutant(
        "retention-purge-unguarded",
        "a purge does not look at the tier's claim: on an unmounted share it finds nothing and forgets the copy",
        "acqd/retention.py",
        "        await self._still_ours(tier)\n"
        '        resumed = await self._j(self.store.fence, "purge", row.copy.id)\n'
        "        if not await self._io(tier.exists, row.copy.dest):\n"
        "            await self._still_ours(tier)  # not gone: its share unmounted meanwhile\n",
        '        resumed = await self._j(self.store.fence, "purge", row.copy.id)\n'
        "        if not await self._io(tier.exists, row.copy.dest):\n",
        ("tests/test_retention_deletes.py::test_retention_never_moves_onto_or_forgets_copies_on_an_unmounted_share",),
    ),
    Mutant(
        "check-probes-empty-mount-point",
        "`acqd check` says OK about a tier holding nothing while the journal has copies there (an unmounted"
        " share) and writes its probe onto the empty mount point",
        "acqd/daemon.py",
        "            elif known.get(name) and (not tier.local or os.path.lexists(tier.root)):\n",
        "            elif False:\n",
        (
            "tests/test_names.py::test_a_share_unmounted_under_a_running_daemon_is_never_written_to_the_local_disk"
            "[tier-is-the-mount-point]",
        ),
    ),
    Mutant(
        "shard-pieces-dropped",
        "a shard read in pieces keeps only its last piece's frames (the shard's other chunks are never written)",
        "acqd/layouts/frames.py",
        "                    futures.extend(pool.submit(encode, frame) for frame in little(piece))\n",
        "                    futures = [pool.submit(encode, frame) for frame in little(piece)]\n",
        ("tests/test_framepool.py::test_a_shard_read_in_pieces_is_stored_as_when_read_whole",),
    ),
    Mutant(
        "frame-ships-unlimited",
        "every ship worker encodes a frame file at once (each on every core): the cores crowded",
        "acqd/pipeline.py",
        "        heavy = isinstance(placed0.layout, FrameLayout) and follow is None\n",
        "        heavy = False\n",
        ("tests/test_inprocess.py::test_frame_files_are_encoded_a_few_at_a_time",),
    ),
    Mutant(
        "hold-until-start-of-day",
        "`acqd hold --until DAY` ends at 00:00 UTC on DAY: a purge due that day goes ahead a day early",
        "acqd/cli.py",
        "    if is_day(text):\n",
        "    if False:\n",
        ("tests/test_retention.py::test_a_hold_until_a_day_keeps_the_data_all_that_day_anywhere",),
    ),
    Mutant(
        "guard-one-lock",
        "the claim guard takes one lock for all tiers: a tier that hangs holds up every other tier's check",
        "acqd/claims.py",
        "            return self._locks.setdefault(tier.name, threading.Lock())\n",
        "            return self._locks.setdefault('all', threading.Lock())\n",
        ("tests/test_names.py::test_a_tier_that_hangs_never_holds_up_the_claim_checks_of_the_others",),
    ),
    Mutant(
        "check-one-storage-test-on-mount-point",
        "`acqd check`'s test of two tiers being one storage writes its marker onto an unmounted share's mount point",
        "acqd/daemon.py",
        "if n not in absent and n not in waits}",
        "if n not in absent}",
        ("tests/test_config.py::test_check_writes_nothing_onto_an_unmounted_share_beside_another_tier",),
    ),
    Mutant(
        "hold-sync-onto-mount-point",
        "retention's hold-record sync writes the records onto an unmounted share's mount point",
        "acqd/retention.py",
        "                    await self._still_ours(t, sweep=False)\n",
        "                    pass\n",
        ("tests/test_retention_deletes.py::test_retention_never_moves_onto_or_forgets_copies_on_an_unmounted_share",),
    ),
    Mutant(
        "hub-moves-onto-empty-mount-point",
        "a claimless sweep takes a local tier's empty folder for the tier: it moves movies onto an unmounted"
        " share's mount point and deletes the central copies (the hub's markers say it too; this look is the"
        " one a runner without markers has)",
        "acqd/retention.py",
        "            elif tier.local and (tier.name in self._in_use or await self._j(self.store.known_on, "
        "tier.name)):\n",
        "            elif False:\n",
        ("tests/test_retention_deletes.py::test_a_share_unmounted_during_a_claimless_sweep_keeps_every_old_copy",),
    ),
    Mutant(
        "claimless-folder-change-unnoticed",
        "a retention sweep without claims (the facility hub) never asks whether a local tier is still the folder it"
        " was: a share unmounted during a move takes the copy into its mount point and the old copy is deleted",
        "acqd/retention.py",
        "                elif now != before:\n",
        "                elif False:\n",
        ("tests/test_retention_deletes.py::test_a_share_unmounted_during_a_claimless_sweep_keeps_every_old_copy",),
    ),
    Mutant(
        "mount-point-copy-left",
        "a move whose new tier's folder changed leaves the copy it made in the mount point: the folder is no longer"
        " empty at the next sweep's look",
        "acqd/retention.py",
        "            if made is not None and exc.tier == dst.name:",
        "            if False:",
        ("tests/test_retention_deletes.py::test_a_share_unmounted_during_a_claimless_sweep_keeps_every_old_copy",),
    ),
    Mutant(
        "plan-hides-unmarked",
        "`acqd hub plan` does not say which local tiers lack their marker: the dry run promises moves the sweep"
        " will refuse",
        "acqd/cli.py",
        "        unmarked = _unmarked_tiers(cfg)\n",
        "        unmarked: dict[str, str] = {}\n",
        ("tests/test_hub.py::test_the_hub_never_moves_onto_a_capacity_share_that_is_not_mounted",),
    ),
    Mutant(
        "claim-on-unmounted-mount-point",
        "a tier's first claim does not ask whether its folder is below a mount point of fstab with nothing"
        " mounted: the first start with the share down claims the empty mount point and ships (and releases)"
        " onto the local disk",
        "acqd/claims.py",
        "    if tier.local and (point := unmounted_mount_point(tier.root)) is not None:\n",
        "    if False and (point := unmounted_mount_point(tier.root)) is not None:\n",
        ("tests/test_mounts.py::test_a_first_start_with_the_share_not_mounted_ships_nothing_onto_the_local_disk",),
    ),
    Mutant(
        "check-probes-unmounted-mount-point",
        "`acqd check` does not say that a tier's share is not mounted (and write-probes its empty mount point)",
        "acqd/daemon.py",
        "        if tier.local and (point := unmounted_mount_point(tier.root)) is not None:\n",
        "        if False and (point := unmounted_mount_point(tier.root)) is not None:\n",
        ("tests/test_mounts.py::test_a_first_start_with_the_share_not_mounted_ships_nothing_onto_the_local_disk",),
    ),
    Mutant(
        "self-bind-taken-for-a-mount",
        "a folder bound onto itself (systemd's ReadWritePaths= of an unmounted share's mount point) counts as"
        " the share mounted: inside the service the first start with the share down ships onto the local disk",
        "acqd/mounts.py",
        "                continue  # the folder bound onto itself: what is there is the disk below\n",
        "                pass\n",
        ("tests/test_mounts.py::test_a_folder_bound_onto_itself_is_not_a_share_mounted",),
    ),
    Mutant(
        "fstab-symlinks-unresolved",
        "fstab's mount points are compared as written: below a symlinked folder (/mnt -> /var/mnt) the tier's"
        " resolved path is below no expected mount point",
        "acqd/mounts.py",
        " if outer is not None else _resolved(raw)\n",
        " if outer is not None else raw\n",
        ("tests/test_mounts.py::test_an_fstab_mount_point_below_a_symlinked_folder_is_found",),
    ),
    Mutant(
        "adopt-onto-unmounted-mount-point",
        "`acqd adopt` claims a tier whose share is not mounted: its claim goes into the empty mount point",
        "acqd/claims.py",
        "    for tier in tiers.values():  # a share not mounted: nothing to adopt there, and no claim onto the local"
        " disk\n        require_mounted(tier)\n",
        "",
        ("tests/test_mounts.py::test_adopt_with_the_share_not_mounted_claims_nothing_on_the_local_disk",),
    ),
    Mutant(
        "guard-trusts-claim-in-mount-point",
        "the running daemon's claim look takes a claim of this run in an unmounted share's mount point for the"
        " tier: the next file is written onto the local disk and released",
        "acqd/claims.py",
        "        require_mounted(tier)  # a claim of this run in the empty mount point (`adopt` with the share down)\n",
        "",
        ("tests/test_mounts.py::test_a_claim_of_this_run_in_an_unmounted_mount_point_does_not_make_it_the_tier",),
    ),
    Mutant(
        "hub-marker-in-unmounted-mount-point",
        "`acqd hub mark-tier` marks an unmounted share's mount point, and the hub takes a marked mount point"
        " for the tier",
        "acqd/retention.py",
        "    if (point := unmounted_mount_point(tier.root)) is not None:\n"
        '        raise DestinationError(f"tier {tier.name}: {describe_unmounted(point)}")\n'
        "    path = marker_path(tier)\n",
        "    path = marker_path(tier)\n",
        ("tests/test_mounts.py::test_hub_mark_tier_refuses_an_unmounted_mount_point_and_a_marker_there_is_no_tier",),
    ),
    Mutant(
        "scan-chunk-forgets-unreadable",
        "a scan in chunks remembers only its last chunk's unreadable paths: one met earlier is said readable"
        " again at the scan's end and reported again at every scan",
        "acqd/pipeline.py",
        "                found.update(e.relpath for e in entries if e.kind is Kind.UNREADABLE)\n",
        "                found = {e.relpath for e in entries if e.kind is Kind.UNREADABLE}\n",
        ("tests/test_inprocess.py::test_a_scan_in_chunks_admits_every_file_and_says_each_unreadable_path_once",),
    ),
    Mutant(
        "watch-root-reconciled-on-empty-mount-point",
        "the start reconciles a watch root whose disk is not mounted: every pending file of it is marked vanished"
        " and interrupted releases are recorded finished",
        "acqd/pipeline.py",
        "            if await self._view(c.root) is None:\n                now.append(c)\n",
        "            if True:\n                now.append(c)\n",
        ("tests/test_mounts.py::test_pending_files_of_a_watch_root_whose_disk_is_not_mounted_are_not_taken_for_gone",),
    ),
    Mutant(
        "late-mount-never-reconciled",
        "a watch root whose disk mounts after the start is never reconciled in that run: a file its release"
        " moved aside stays hidden, a file deleted while acqd was down stays pending",
        "acqd/pipeline.py",
        "        if up and ctx.index in self._unreconciled:\n",
        "        if False:\n",
        ("tests/test_mounts.py::test_pending_files_of_a_watch_root_whose_disk_is_not_mounted_are_not_taken_for_gone",),
    ),
    Mutant(
        "hints-of-an-out-of-view-root-admitted",
        "the events of a watch root's empty mount point (its disk not mounted) are taken as hints: files the"
        " camera writes onto the local disk are shipped under the disk's names",
        "acqd/pipeline.py",
        "                    if ctx.up is False:\n                        continue  # out of view",
        "                    if False:\n                        continue  # out of view",
        ("tests/test_mounts.py::test_pending_files_of_a_watch_root_whose_disk_is_not_mounted_are_not_taken_for_gone",),
    ),
    Mutant(
        "settling-file-vanished-on-unmount",
        "a file whose settle look meets an unmounted disk's empty mount point is recorded vanished",
        "acqd/pipeline.py",
        "                if await self._view(c.ctx.root) is not None:\n"
        "                    return  # its disk unmounted, not the file gone: found again when it is back\n"
        '                await self._gone(c.ctx, c.row, "vanished before it was shipped")\n',
        '                await self._gone(c.ctx, c.row, "vanished before it was shipped")\n',
        ("tests/test_mounts.py::test_a_disk_unmounted_under_a_running_daemon_leaves_its_settling_files_pending",),
    ),
    Mutant(
        "verify-takes-unmounted-disk-for-gone",
        "`acqd verify` takes the sources on an unmounted acquisition disk for gone: a damaged copy's file is"
        " quarantined as lost for good",
        "acqd/cli.py",
        "    why = out_of_view(row.root)  # the acquisition disk not mounted, or verify run on another PC\n",
        "    why = None if os.path.isdir(row.root) else 'gone'\n",
        ("tests/test_mounts.py::test_verify_with_the_acquisition_disk_not_mounted_does_not_take_its_files_for_gone",),
    ),
    Mutant(
        "outer-unmounted-entry-wins",
        "a path on a share mounted below an unmounted outer fstab entry (a container's bind, a noauto parent) is"
        " taken for the outer entry's empty mount point: a healthy tier waits for ever",
        "acqd/mounts.py",
        '    innermost = max((m for m in mounted() if _below(real, m)), key=len, default="/")\n',
        '    innermost = "/"\n',
        ("tests/test_mounts.py::test_a_share_mounted_deeper_than_an_unmounted_outer_entry_is_what_the_tier_is_on",),
    ),
    Mutant(
        "fstab-self-bind-expected",
        "a folder fstab binds onto itself is taken for a share: every tier below it waits for ever",
        "acqd/mounts.py",
        '("bind" in options or "rbind" in options):\n            continue\n',
        '("bind" in options or "rbind" in options):\n            pass\n',
        ("tests/test_mounts.py::test_a_share_mounted_deeper_than_an_unmounted_outer_entry_is_what_the_tier_is_on",),
    ),
    Mutant(
        "take-back-refuses-symlinked-tier",
        "the take-back does not follow a tier folder that is a symlink: the failed move's copy stays in the"
        " mount point",
        "acqd/retention.py",
        "            fds.append(os.open(root, flags & ~os.O_NOFOLLOW))",
        "            fds.append(os.open(root, flags))",
        ("tests/test_mounts.py::test_the_take_back_of_a_failed_move_follows_a_tier_folder_that_is_a_symlink",),
    ),
    Mutant(
        "mountinfo-change-unseen",
        "/proc/self/mountinfo is read once: a share unmounted (or mounted) later is never seen",
        "acqd/mounts.py",
        '        elif _mountinfo_cache["poll"].poll(0):\n',
        "        elif False:\n",
        ("tests/test_mounts.py::test_a_mount_and_an_unmount_are_seen_at_once_through_the_kernels_signal",),
    ),
    Mutant(
        "nested-fstab-entry-looked-into",
        "an fstab entry below another is resolved by looking into the outer one: a share whose server is down"
        " hangs every tier's check",
        "acqd/mounts.py",
        "        outer = max((r for r in resolved if _below(raw, r)), key=len, default=None)\n",
        "        outer = None\n",
        ("tests/test_mounts.py::test_an_fstab_entry_below_another_is_resolved_without_looking_into_the_outer_one",),
    ),
    Mutant(
        "hub-without-markers",
        "the facility hub does not ask for its local tiers' markers: an unmounted share's mount point with a note"
        " in it (not empty) is taken for the tier",
        "acqd/hub.py",
        "                markers=True,\n",
        "",
        ("tests/test_hub.py::test_the_hub_never_moves_onto_a_capacity_share_that_is_not_mounted",),
    ),
    Mutant(
        "marker-unchecked",
        "a claimless sweep never looks for the tier's marker: a tier's first use with its share not mounted, or a"
        " stray file in the mount point, takes the mount point for the tier",
        "acqd/retention.py",
        "                await self._io(check_marker, tier)\n",
        "                pass\n",
        (
            "tests/test_hub_markers.py::test_a_tiers_first_use_with_its_share_not_mounted_moves_nothing",
            "tests/test_hub_markers.py::test_a_stray_file_in_the_mount_point_is_not_the_tier",
        ),
    ),
    Mutant(
        "marker-of-any-tier",
        "any tier's marker makes a folder the tier: a share mounted in another tier's place is taken for it",
        "acqd/retention.py",
        '    if not isinstance(doc, dict) or doc.get("tier") != tier.name:\n',
        "    if not isinstance(doc, dict):\n",
        ("tests/test_hub_markers.py::test_a_marker_of_another_tier_is_not_this_tiers",),
    ),
    Mutant(
        "source-looked-at-first",
        "the look after a move's copy asks the old tier first: when both shares went away, the copy made into the"
        " new tier's mount point is never taken back",
        "acqd/retention.py",
        "            await self._still_ours(dst, src)  #",
        "            await self._still_ours(src, dst)  #",
        ("tests/test_hub_markers.py::test_a_copy_left_when_the_source_also_went_away_is_taken_back",),
    ),
    Mutant(
        "verified-leftover-unchecked",
        "a move that found an object under the name (not made by it) does not ask, after the look, whether that"
        " is still what the name shows: a leftover verified in a mount point is recorded once the share is back",
        "acqd/retention.py",
        "        seen = made if made is not None else await self._io(_identity, dst, rel)",
        "        seen = made",
        ("tests/test_hub_markers.py::test_a_leftover_copy_verified_while_the_share_was_away_is_not_recorded",),
    ),
    Mutant(
        "copy-bounce-unnoticed",
        "a move does not ask whether the name still shows the copy it made: a share unmounted during the copy"
        " and mounted again before the look after it hides the verified copy, and the old one is deleted",
        "acqd/retention.py",
        "        if seen is not None and await self._io(_identity, dst, rel) != seen:\n",
        "        if False:\n",
        (
            "tests/test_retention_deletes.py::"
            "test_a_share_unmounted_and_mounted_again_during_one_copy_keeps_the_old_copy",
        ),
    ),
    Mutant(
        "take-back-any-object",
        "a failed move takes back whatever is under the copy's name: a share mounted meanwhile loses an object"
        " acqd did not make",
        "acqd/retention.py",
        "        if st is None or (st.st_dev, st.st_ino) != made:\n",
        "        if st is None:\n",
        ("tests/test_retention_deletes.py::test_a_failed_claimless_move_never_takes_back_an_object_it_did_not_make",),
    ),
    Mutant(
        "take-back-by-path",
        "a failed move's take-back deletes its copy by path after the look: a share mounted in between loses the"
        " object under that name",
        "acqd/retention.py",
        "                os.unlink(parts[-1], dir_fd=fds[-1])\n",
        "                os.unlink(tier.path(rel))\n",
        (
            "tests/test_retention_deletes.py::"
            "test_a_share_mounted_while_a_failed_move_takes_its_copy_back_keeps_what_it_holds",
        ),
    ),
    Mutant(
        "mount-point-folders-left",
        "a failed move takes back its copy but not the folders it made: the tier's folder in the mount point is"
        " not empty, and the next sweep, the share still away, moves everything onto the local disk",
        "acqd/retention.py",
        "                os.rmdir(parts[i - 1], dir_fd=fds[i - 1])\n",
        "                return\n",
        ("tests/test_retention_deletes.py::test_a_share_unmounted_during_a_claimless_sweep_keeps_every_old_copy",),
    ),
    Mutant(
        "hold-sync-compares-old-folders",
        "the hold records' sync compares the tiers' folders with the last sweep's: after a share is mounted again"
        " between sweeps, the records of its tier are skipped",
        "acqd/retention.py",
        "await self._still_ours(t, sweep=False)",
        "await self._still_ours(t)",
        (
            "tests/test_retention_deletes.py::"
            "test_a_share_mounted_again_between_two_sweeps_of_one_runner_is_its_folder_then",
        ),
    ),
    Mutant(
        "frame-imports-skip-mrcfile",
        "the frame libraries' import at start leaves mrcfile out: a broken mrcfile quarantines each movie after"
        " five attempts instead of stopping the daemon, and I/O threads race to import it",
        "acqd/memory.py",
        "    import mrcfile.dtypes\n    import mrcfile.utils  # noqa: F401\n",
        "",
        (
            "tests/test_framepool.py::"
            "test_the_daemon_imports_numpy_only_with_the_frame_libraries_and_those_import_all_of_them",
        ),
    ),
    Mutant(
        "batch-refused-item-owns-the-name",
        "an item of a batch refused for another file's name is taken for that name's owner: the file whose own"
        " copy it is, later in the same call, is refused",
        "acqd/journal.py",
        "                    else:\n                        owner[dest] = fid",
        "                    owner[dest] = fid\n                    if False:\n                        pass",
        ("tests/test_journal.py::test_a_batchs_steps_change_every_file_they_can_and_say_why_not_for_the_others",),
    ),
    Mutant(
        "batch-stored-as-another-files-copy",
        "a batch of small files records a copy under a name the journal has as another file's copy",
        "acqd/journal.py",
        "                    if owner.get(dest, fid) != fid:\n",
        "                    if False:\n",
        ("tests/test_journal.py::test_a_batchs_steps_change_every_file_they_can_and_say_why_not_for_the_others",),
    ),
    Mutant(
        "mrc-byte-order-dropped",
        "a big-endian MRC's dtype is taken from one header record (native order): its pixels stored byte-swapped",
        "acqd/readers/mrc.py",
        "            dtype = mrcfile_utils.data_dtype_from_header(h)  #",
        "            dtype = mrcfile_utils.data_dtype_from_header(h[0])  #",
        ("tests/test_source_structure.py::test_a_big_endian_mrc_is_stored_as_its_values",),
    ),
    Mutant(
        "tiff-series-planes-ignored",
        "an ImageJ stack with one IFD (images=N) is stored as its one page: the other planes hidden",
        "acqd/readers/tiff.py",
        "    if planes > n:\n",
        "    if False:\n",
        ("tests/test_source_structure.py::test_an_imagej_stack_with_one_ifd_is_stored_with_every_plane",),
    ),
    Mutant(
        "tiff-hyperstack-flattened",
        "a z x channel hyperstack is stored as one z axis of all its planes",
        "acqd/readers/tiff.py",
        "    if len(lead) > 1:\n",
        "    if False:\n",
        ("tests/test_source_structure.py::test_a_hyperstack_is_never_stored_as_one_z_axis",),
    ),
    Mutant(
        "tiff-axis-from-profile-only",
        "a TIFF's stated plane axis (time points, channels) is ignored: labelled as the profile says, with a z step",
        "acqd/readers/tiff.py",
        "    return _AXIS0.get(lead[0][0]) if lead else None\n",
        "    return None\n",
        ("tests/test_source_structure.py::test_a_stack_of_one_stated_axis_is_labelled_as_the_file_states",),
    ),
    Mutant(
        "tree-delete-by-glob",
        "a stored tree is deleted with fsspec's rm(recursive), which takes its name for a glob pattern",
        "acqd/storage/base.py",
        "            if tree:\n                self._rm_tree(path)\n",
        "            if tree:\n                fs.rm(path, recursive=True)\n",
        ("tests/test_storage.py::test_a_name_with_glob_characters_touches_exactly_its_own_objects",),
    ),
    Mutant(
        "s3-tree-commit-by-glob",
        "an S3 tree is committed with fsspec's copy, which takes each object's name for a glob pattern",
        "acqd/storage/s3.py",
        'self._call("copy_object", Bucket=bucket, Key=dest, CopySource={"Bucket": bucket, "Key": k})\n',
        'self.fs.copy(f"{bucket}/{k}", f"{bucket}/{dest}")\n',
        (
            "tests/test_remote_names.py::test_an_s3_zarr_name_with_a_glob_character_ships",
            "tests/test_storage.py::test_a_name_with_glob_characters_touches_exactly_its_own_objects",
        ),
    ),
    Mutant(
        "s3-versionid-name-taken",
        "a name holding `?versionId=` is written to S3 (and read back under another key, for ever)",
        "acqd/storage/s3.py",
        '        if "?versionId=" in rel:\n',
        "        if False:\n",
        ("tests/test_remote_names.py::test_an_s3_name_holding_versionid_is_quarantined_and_kept",),
    ),
    Mutant(
        "stuck-io-awaited",
        "a stopping daemon waits for storage calls blocked on a server that stopped answering (for ever)",
        "acqd/daemon.py",
        "                self.stuck_io = leave_executor(io, IO_EXIT_SECONDS)\n",
        "                io.shutdown(wait=True, cancel_futures=True)\n",
        ("tests/test_remote_hang.py::test_sigterm_stops_the_daemon_while_the_s3_server_hangs",),
    ),
    Mutant(
        "verify-records-nothing",
        "`acqd verify` reports a damaged copy but the journal still counts it verified (its source is released)",
        "acqd/cli.py",
        "        if damaged:\n            _record_damaged(sd, damaged)\n",
        "        if False:\n            _record_damaged(sd, damaged)\n",
        ("tests/test_fixity.py::test_a_copy_verify_finds_damaged_never_releases_its_source_and_is_shipped_again",),
    ),
    Mutant(
        "claim-gone-reclaimed",
        "a claim gone under a running daemon is written again (onto an unmounted share's empty mount point)",
        "acqd/claims.py",
        "        if there is None:\n            # claimed at the start of this run",
        "        if there is None:\n            write_claim(tier, self.claim, replace=False)\n"
        "            there = read_claim(tier, self.claim.instrument)\n        if False:\n"
        "            # claimed at the start of this run",
        ("tests/test_names.py::test_a_share_unmounted_under_a_running_daemon_is_never_written_to_the_local_disk",),
    ),
    Mutant(
        "empty-tier-claimed",
        "a tier holding nothing of an instrument whose journal has copies there (an empty mount point) is claimed",
        "acqd/claims.py",
        "        if known and not tier.has_objects(claim.instrument):\n",
        "        if False:\n",
        (
            "tests/test_config.py::test_a_tier_folder_that_has_gone_is_never_made_again",
            "tests/test_names.py::test_a_share_unmounted_under_a_running_daemon_is_never_written_to_the_local_disk",
        ),
    ),
    Mutant(
        "tier-file-accepted",
        "a file:// tier that is a regular file passes `check` and `run` retries it for ever",
        "acqd/daemon.py",
        '            raise ConfigError(f"tiers.{name}: {tier.root} is a file, not a folder")\n',
        "            pass\n",
        ("tests/test_config.py::test_a_tier_that_is_a_file_is_a_configuration_error",),
    ),
    Mutant(
        "retention-age-minutes",
        "a retention age of `6m` (six months meant) is taken as six minutes",
        "acqd/units.py",
        '        if m and m.group(2) == "m":\n',
        "        if False:\n",
        ("tests/test_policy.py::test_a_retention_age_that_reads_as_minutes_or_seconds_is_refused",),
    ),
    Mutant(
        "notify-typo-is-an-address",
        "a misspelt `notify` entry (`owners`) becomes a recipient nobody reads",
        "acqd/policy/model.py",
        '            if n not in ("owner", "fallback") and not is_address(n):',
        "            if False and not is_address(n):",
        ("tests/test_policy.py::test_a_notify_entry_that_is_no_recipient_is_refused",),
    ),
    Mutant(
        "events-dropped-silently",
        "MQTT events still queued at a stop go with the process, uncounted and unsaid",
        "acqd/events.py",
        "            left = self._outbox.qsize() + (self._pending is not None)\n",
        "            left = 0\n",
        ("tests/test_robust.py::test_events_still_queued_at_a_stop_are_counted_and_said",),
    ),
    Mutant(
        "clock-suspension-reported-late",
        "a clock suspension kept from an earlier run reads 0 on the gauge until the first sweep",
        "acqd/retention.py",
        "        if st.suspension is not None and not self._reported:\n",
        "        if False:\n",
        ("tests/test_retention.py::test_a_clock_jump_of_13_days_never_purges_early",),
    ),
    Mutant(
        "simulate-overwrites",
        "`acqd simulate` writes over a file in its output folder",
        "acqd/simulate.py",
        "        if os.path.lexists(folder / name):\n",
        "        if False:\n",
        ("tests/test_cli.py::test_simulate_never_overwrites_a_file_in_its_output_folder",),
    ),
    Mutant(
        "once-ignores-unreadable",
        "`run --once` exits 0 while a folder could not be listed (its files never seen)",
        "acqd/daemon.py",
        "                if self.once and pipeline.unreadable and code == 0:\n",
        "                if False:\n",
        ("tests/test_robust.py::test_once_fails_while_a_folder_could_not_be_listed",),
    ),
    Mutant(
        "verify-drops-a-release-intent",
        "`acqd verify` records a damaged copy of a file being released, dropping the release's intent",
        "acqd/journal.py",
        '            if db.execute("SELECT 1 FROM releasing WHERE file_id = ?", (file_id,)).fetchone():\n'
        "                return None\n            self._set(row, State.SEEN, reason, attempts=0)\n",
        "            self._set(row, State.SEEN, reason, attempts=0)\n"
        '            db.execute("DELETE FROM releasing WHERE file_id = ?", (file_id,))\n',
        ("tests/test_fixity.py::test_verify_never_drops_the_intent_of_a_release_in_progress[there]",),
    ),
    Mutant(
        "verify-lost-for-good-drops-a-release-intent",
        "`acqd verify` quarantines a file being released whose source looks gone (moved aside by the release),"
        " dropping the release's intent: the source stays under its hidden name",
        "acqd/journal.py",
        '            if db.execute("SELECT 1 FROM releasing WHERE file_id = ?", (file_id,)).fetchone():\n'
        '                return None\n            self._set(row, State.QUARANTINED, f"{LOST_FOR_GOOD}{reason}")\n',
        '            self._set(row, State.QUARANTINED, f"{LOST_FOR_GOOD}{reason}")\n'
        '            db.execute("DELETE FROM releasing WHERE file_id = ?", (file_id,))\n',
        ("tests/test_fixity.py::test_verify_never_drops_the_intent_of_a_release_in_progress[moved-aside]",),
    ),
    Mutant(
        "marker-not-waking",
        "a marker file's appearance does not have the file it marks looked at (it waits out its window)",
        "acqd/pipeline.py",
        "                        self._wake_marked(ctx, rel)  # a marker file: the file it marks is looked at now\n",
        "                        pass\n",
        ("tests/test_stream.py::test_a_marker_file_completes_its_file_when_it_appears",),
    ),
    Mutant(
        "stream-compare-streamed-bytes",
        "the compare at completion takes the checksum of what was streamed instead of the re-read file's",
        "acqd/layouts/stream.py",
        "        again = self._rehash(source, size)\n",
        "        again = self._rehash(source, size) and digest\n",
        ("tests/test_stream.py::test_earlier_frame_rewritten_falls_back",),
    ),
    Mutant(
        "hub-once-no-renew",
        "`acqd hub --once` does not renew its lease while it sweeps (a sweep longer than ttl/2 stops half-way)",
        "acqd/hub.py",
        'asyncio.create_task(self._keep(lease_db, store_db, leasex), name="hub-lease")\n'
        "                    try:\n"
        "                        rc = await self._sweep(runner, store)\n",
        'asyncio.create_task(asyncio.sleep(0), name="hub-lease")\n'
        "                    try:\n"
        "                        rc = await self._sweep(runner, store)\n",
        ("tests/test_hub.py::test_a_once_sweep_longer_than_its_lease_renews_it",),
    ),
    Mutant(
        "usage-ignores-hub-actions",
        "usage counts the daemons' rows only (a copy the hub purged or moved still counted on its old tier)",
        "acqd/overview/usage.py",
        "USAGE_SQL = (\n    _DAEMON_LIVE + ",
        "USAGE_SQL = _DAEMON_LIVE\n_UNUSED = (\n    _DAEMON_LIVE + ",
        ("tests/test_hub.py::test_one_digest_per_owner_across_instruments_and_no_purge_before_its_lead_time",),
    ),
    Mutant(
        "hub-actions-not-read-back",
        "a daemon never reads back what the hub purged or moved (its journal keeps calling those copies verified)",
        "acqd/catalog.py",
        "                await self._read_hub(conn)\n",
        "                self.hub_looked = True\n",
        ("tests/test_hub.py::test_daemons_learn_what_the_hub_did_to_their_copies",),
    ),
    Mutant(
        "hub-adopts-its-own-copy-again",
        "the hub takes a daemon's row for an object it already has (a transition's new copy) as a second item",
        "acqd/hubdb.py",
        "h.instrument = c.instrument AND h.tier = c.tier AND h.dest = c.dest AND h.journal_id = c.journal_id)",
        "false)",
        ("tests/test_hub.py::test_daemons_learn_what_the_hub_did_to_their_copies",),
    ),
    Mutant(
        "zarr-tree-not-durable",
        "a local Zarr copy (a folder) is named by its rename without its files and folders fsynced first",
        "acqd/storage/base.py",
        "                    self._durable_tree(tmp)\n",
        "",
        (f"{FAULTS}::test_a_zarr_copy_is_named_only_once_every_file_in_it_is_durable",),
    ),
    Mutant(
        "zarr-stream-last-shard-lost",
        "a Zarr copy streamed while its file grew is completed without its last, partly filled shard",
        "acqd/layouts/stream.py",
        "        if self.pending:  # the last shard: its places past the array's end hold no chunk\n",
        "        if False:\n",
        ("tests/test_stream.py::test_movie_is_streamed_while_written[z-mib]",),
    ),
    Mutant(
        "zarr-stream-shards-misplaced",
        "a streamed Zarr copy's shards written one place off along the frames (the first shard missing)",
        "acqd/layouts/stream.py",
        "        self.tier.put_in_temp_tree(self.dest, self.key_of(index), shard_parts(chunks))\n",
        "        self.tier.put_in_temp_tree(self.dest, self.key_of(index + 1), shard_parts(chunks))\n",
        ("tests/test_stream.py::test_a_streamed_zarr_copy_is_the_copy_the_whole_file_way_writes",),
    ),
    Mutant(
        "frame-imports-not-warmed",
        "the frame libraries are left to be imported by whichever I/O threads reach them first, at once",
        "acqd/memory.py",
        "    import zarr\n    import zarr.api.asynchronous\n    import zarr.codecs\n    import zarr.core.buffer\n"
        "    import zarr.storage  # noqa: F401\n",
        "",
        ("tests/test_framepool.py::test_the_frame_libraries_are_imported_before_io_threads_race_to_import_them",),
    ),
    Mutant(
        "hash-pieces-skip-rows",
        "a frame hashed in pieces (rows flipped, big-endian) leaves out its last rows",
        "acqd/layouts/frames.py",
        "        for i in range(0, ny, step):\n",
        "        for i in range(0, ny - step, step):\n",
        ("tests/test_framepool.py::test_hashing_in_pieces_is_the_checksum_of_the_canonical_copy",),
    ),
    Mutant(
        "hold-asked-twice-placed-twice",
        "the same hold asked again (a pasted command run twice) is placed a second time and listed twice",
        "acqd/journal.py",
        "        if same is not None:\n            return int(same[0])\n",
        "",
        ("tests/test_retention.py::test_plan_and_hold_commands",),
    ),
    Mutant(
        "hub-hold-asked-twice-placed-twice",
        "the same hold asked again in the facility catalog is placed a second time and listed twice",
        "acqd/hubdb.py",
        "        if same:\n            return int(same[0][0])\n",
        "",
        ("tests/test_hub.py::test_a_hold_in_the_catalog_blocks_the_purge",),
    ),
    Mutant(
        "retention-failure-unannounced",
        "a retention transition or purge that fails is a log line only: no retention.failed event, no metric",
        "acqd/retention.py",
        '                self._emit("retention.failed", row, stage=a.kind, reason=str(exc))\n',
        "",
        ("tests/test_retention.py::test_transition_never_deletes_an_unverified_copy",),
    ),
    Mutant(
        "undelivered-warning-unannounced",
        "a warning the mail server did not take is a log line only: its purges wait and nobody is told",
        "acqd/retention.py",
        "                for a in acts:  # an event and a metric per file warned about: its purge waits\n",
        "                for a in ():\n",
        ("tests/test_retention.py::test_undelivered_warning_is_retried_and_delays_the_purge",),
    ),
    Mutant(
        "start-time-not-exported",
        "acqd_start_time_seconds is never set: a daemon in a crash loop (restarted by systemd) raises no alert",
        "acqd/metrics.py",
        "        self.started.labels(instrument).set(time.time())\n",
        "",
        ("tests/test_service.py::test_live_metrics_scraped_by_promtool_and_prometheus",),
    ),
    Mutant(
        "trial-partial-when-nothing-fits",
        "a codec trial leaves costly candidates half-measured even when none fits the budget: the choice"
        " among the cheapest rests on one frame's timing and ratio",
        "acqd/layouts/choose.py",
        "        while not all(done(t) for t in trials):\n",
        "        while False:\n",
        ("tests/test_codecs.py::test_a_costly_candidate_is_timed_no_further_than_the_choice_needs",),
    ),
    Mutant(
        "sweep-outcome-unrecorded",
        "what the last retention sweep did and what failed is not kept: `acqd status` cannot show a warning"
        " that is not delivered",
        "acqd/retention.py",
        "            await self._j(self.store.note_sweep, res.summary())\n",
        "            pass\n",
        ("tests/test_retention.py::test_undelivered_warning_is_retried_and_delays_the_purge",),
    ),
    Mutant(
        "verify-missing-not-recorded",
        "`acqd verify` reports a missing or short copy and records nothing: with no release configured,"
        " nothing ever ships the file again, and the acquisition disk is wiped believing it stored",
        "acqd/cli.py",
        "                damaged.extend(rows)\n",
        "                pass\n",
        ("tests/test_fixity.py::test_verify_reports_every_bad_copy_and_restore_leaves_nothing_partial",),
    ),
    Mutant(
        "verify-records-unmounted-tier",
        "`acqd verify` records every copy on a share that is not mounted as lost: everything is shipped again",
        "acqd/cli.py",
        "            if whole.get(tier):\n",
        "            if True:\n",
        ("tests/test_fixity.py::test_verify_of_a_tier_that_is_not_mounted_records_nothing",),
    ),
    Mutant(
        "truncated-while-written-quarantined",
        "a movie that looks truncated while its writer still has it open (a pause longer than the settle"
        " window) is quarantined, and `run --once` counts it done",
        "acqd/pipeline.py",
        "            if await self._being_written(c):  # still written (a pause longer than the window): not broken\n",
        "            if False:\n",
        (
            "tests/test_robust.py::test_a_movie_that_looks_truncated_while_a_writer_has_it_open_waits_for_it",
            "tests/test_robust.py::test_a_mib_cut_mid_frame_while_its_writer_has_it"
            "_open_is_waited_for_not_stored_as_it_is",
        ),
    ),
    Mutant(
        "format-proof-while-written",
        "a file whose format says complete is taken as complete while a process here still writes it: a"
        " writer that keeps the MRC header valid after every frame gets one stored version per frame",
        "acqd/pipeline.py",
        "        if open_now:  # a process here still writes it (a writer that keeps the header valid after every\n",
        "        if False:\n",
        ("tests/test_robust.py::test_an_mrc_whose_header_is_valid_after_every_frame_ships_once_its_writer_closes",),
    ),
    Mutant(
        "other-root-name-internal-retry",
        "a destination name that is another watch root's copy is retried as an internal error for ever, with"
        " no conflict event or metric",
        "acqd/pipeline.py",
        '                raise NameTakenError(\n                    f"{tier.url(dest)} is the copy of',
        '                raise AcqdError(\n                    f"{tier.url(dest)} is the copy of',
        ("tests/test_robust.py::test_a_second_watch_root_shipping_to_the_same_prefix_is_a_named_conflict",),
    ),
    Mutant(
        "adopt-claims-when-nothing-matches",
        "`acqd adopt` from a watch path no manifest names imports nothing and takes the prefix over all the"
        " same: the daemon that shipped it is locked out, every file shipped again",
        "acqd/claims.py",
        "    if elsewhere and not any(found.values()):\n",
        "    if False:\n",
        (
            "tests/test_robust.py::test_adopt_from_another_watch_path_claims_nothin"
            "g_and_an_adopted_journal_knows_its_tiers",
        ),
    ),
    Mutant(
        "adopt-forgets-tiers",
        "an adopted journal does not record where its tiers are: `restore` and `verify` need --dest",
        "acqd/daemon.py",
        "            record_tiers(journal, {n: (t.url, dict(t.options)) for n, t in config.tiers.items()})\n",
        "",
        (
            "tests/test_robust.py::test_adopt_from_another_watch_path_claims_nothin"
            "g_and_an_adopted_journal_knows_its_tiers",
        ),
    ),
    Mutant(
        "imports-not-awaited",
        "the I/O threads ship while zarr and the codecs are still being imported on the importer's thread:"
        " two threads importing zarr at once can get it half initialised, and every Zarr ship fails",
        "acqd/pipeline.py",
        "        if self.imports is not None:\n            await asyncio.shield(self.imports)  # done: at once",
        "        if False:\n            await asyncio.shield(self.imports)  # done: at once",
        (
            "tests/test_inprocess.py::test_the_frame_libraries_are_imported_beside_"
            "the_first_scan_and_shipping_waits_for_them",
        ),
    ),
    Mutant(
        "import-failure-unheeded",
        "a broken installation (zarr missing) is not said: the daemon runs on and fails every frame file",
        "acqd/daemon.py",
        "    if fut.cancelled() or fut.exception() is None:\n        return\n",
        "    return\n",
        ("tests/test_inprocess.py::test_a_broken_installation_stops_the_daemon_and_loses_nothing",),
    ),
    Mutant(
        "verified-without-claim",
        "a copy is recorded verified without looking at the tier's claim after its verification: written into"
        " the empty mount point of a share unmounted a moment before, it reads back whole there, and its"
        " source is released",
        "acqd/pipeline.py",
        "            if self.guard is not None:  # the copy just read back lies on the claimed tier, not in the\n",
        "            if False:  # the copy just read back lies on the claimed tier, not in the\n",
        (
            "tests/test_inprocess.py::test_a_share_unmounted_while_its_copies_are_w"
            "ritten_never_takes_them_or_releases_their_sources[one-file]",
        ),
    ),
    Mutant(
        "batch-verified-without-claim",
        "the same for a batch of small files",
        "acqd/pipeline.py",
        "        if good and self.guard is not None:  # the copies read back lie on the claimed tier",
        "        if False:  # the copies read back lie on the claimed tier",
        (
            "tests/test_inprocess.py::test_a_share_unmounted_while_its_copies_are_w"
            "ritten_never_takes_them_or_releases_their_sources[a-batch]",
        ),
    ),
    Mutant(
        "release-without-claim",
        "a release re-checks the stored copy without the tier's claim: an unmounted share's mount point that"
        " holds a copy written there a moment before passes, and the source is deleted",
        "acqd/pipeline.py",
        "        if self.guard is not None:\n            self.guard(tier, True)\n"
        "        res = check_copy(tier, layout, cp, full, just_verified)\n"
        "        if self.guard is not None:  # also when the copy looked gone: not taken for lost on a mount point\n"
        "            self.guard(tier, True)\n",
        "        res = check_copy(tier, layout, cp, full, just_verified)\n",
        (
            "tests/test_inprocess.py::test_a_release_looks_at_the_claim_around_the_copy_check[one-file]",
            "tests/test_inprocess.py::test_a_release_looks_at_the_claim_around_the_copy_check[a-batch]",
        ),
    ),
    Mutant(
        "write-on-stale-claim",
        "the claim looked at up to 2 s before a write: a movie written just after an unmount goes onto the"
        " local disk (found, not recorded, but gigabytes in the empty mount point)",
        "acqd/pipeline.py",
        "                # moment ago would take the copy into its empty mount point, on the local disk\n"
        "                await self._io(self.guard, tier, True)",
        "                # moment ago would take the copy into its empty mount point, on the local disk\n"
        "                await self._io(self.guard, tier)",
        ("tests/test_inprocess.py::test_a_share_unmounted_a_moment_before_a_write_takes_nothing_onto_the_local_disk",),
    ),
    Mutant(
        "release-right-after-format-proof",
        "a movie complete by its header's size is released as soon as it is verified: a writer that opens it"
        " again a moment later (the header's final values, a pre-allocated file's frames) finds no file",
        "acqd/pipeline.py",
        "        left = self._wait_left(c, row)\n        if left > 0:\n"
        "            self._release_later_for(c, left, WAIT_HOLD)\n            return\n",
        "",
        (
            "tests/test_safeguards.py::test_a_writer_that_opens_a_format_complete_movie_again_finds_it_there",
            "tests/test_safeguards.py::test_a_format_complete_movie_is_released_aft"
            "er_its_whole_settle_window_even_a_long_one",
        ),
    ),
    Mutant(
        "lost-for-good-said-shipped-again",
        "`acqd verify` says a lost copy whose source was deleted (or rewritten since) is shipped again, and the"
        " next run forgets the loss (vanished)",
        "acqd/cli.py",
        '            if became is not None and not became.startswith("could not"):\n',
        "            if False:\n",
        ("tests/test_fixity.py::test_verify_says_a_lost_copy_whose_source_is_gone_or_changed_cannot_be_shipped_again",),
    ),
    Mutant(
        "manifest-drops-other-roots",
        "a session manifest written again keeps only this watch root's files: another root's (a root whose"
        " path changed, same prefix) are in no manifest, and `acqd adopt` cannot find them",
        "acqd/pipeline.py",
        "        return other_roots(doc, root), own_entries(doc, root)\n",
        "        return [], own_entries(doc, root)\n",
        (
            "tests/test_robust.py::test_a_watch_root_whose_path_changed_keeps_the_o"
            "ther_roots_files_in_the_session_manifest",
        ),
    ),
    Mutant(
        "once-waits-for-writers-for-ever",
        "`run --once --retry-for` never ends while a process here holds a file open for writing",
        "acqd/pipeline.py",
        "                or self._awaited.get(c.key) == c.row.id\n                or self._changing(c)\n",
        "                or self._changing(c)\n",
        ("tests/test_robust.py::test_once_gives_up_on_a_movie_still_open_for_writing_after_retry_for",),
    ),
    Mutant(
        "retention-move-recorded-without-claim",
        "a retention move records the new copy and deletes the old one without looking at the tiers' claims"
        " after the copy: a share unmounted meanwhile holds the only copy in its empty mount point",
        "acqd/retention.py",
        "        try:\n            await self._still_ours(dst, src)  #",
        "        try:\n            pass  #",
        ("tests/test_retention_deletes.py::test_a_share_unmounted_while_retention_copies_onto_it_keeps_the_old_copy",),
    ),
    Mutant(
        "lost-for-good-reset-as-same-version",
        "a file quarantined as lost for good is re-examined as the same version when a file stands under its"
        " name: another file's content is recorded under the lost version",
        "acqd/states.py",
        "    if state is S.QUARANTINED and lost_for_good:\n",
        "    if False:\n",
        (
            "tests/test_fixity.py::test_a_lost_copy_quarantined_by_verify_is_shippe"
            "d_again_when_its_source_is_back_and_a_new_file_is_a_new_version",
        ),
    ),
    Mutant(
        "verify-takes-unmounted-root-for-gone",
        "`acqd verify` run while the watch root is not mounted takes every source for gone: the intact"
        " sources are never shipped again",
        "acqd/cli.py",
        "    why = out_of_view(row.root)  # the acquisition disk not mounted",
        "    why = None  # the acquisition disk not mounted",
        (
            "tests/test_fixity.py::test_a_lost_copy_quarantined_by_verify_is_shippe"
            "d_again_when_its_source_is_back_and_a_new_file_is_a_new_version",
        ),
    ),
    Mutant(
        "manifest-takes-any-entry",
        "a session manifest keeps another root's entry whatever it holds: one edited at the destination stops"
        " every manifest after it from being written again",
        "acqd/manifest.py",
        "        if isinstance(root, str) and root != watch_root and _well_formed(e):\n",
        "        if isinstance(root, str) and root != watch_root:\n",
        (
            "tests/test_robust.py::test_a_watch_root_whose_path_changed_keeps_the_o"
            "ther_roots_files_in_the_session_manifest",
        ),
    ),
    Mutant(
        "reconcile-import-failure-traceback",
        "a broken installation met by the start's reconciliation (work left from the last run) ends in a"
        " traceback and exit 1 (systemd restarts it for ever), not exit 78 with the reason",
        "acqd/pipeline.py",
        "            if self.halted is not None:  # stopped meanwhile (a broken installation): said by the halt\n"
        "                return\n",
        "",
        (
            "tests/test_inprocess.py::test_a_broken_installation_with_work_left_fro"
            "m_the_last_run_stops_the_daemon_cleanly",
        ),
    ),
    Mutant(
        "release-stamp-ignored",
        "the quick re-check before a release compares sizes only: a copy changed in place after its"
        " verification (its size kept) is taken for the verified one, and the source is deleted",
        "acqd/recheck.py",
        "    if (copy.stamp is not None and now != copy.stamp) or (",
        "    if False and (",
        (
            "tests/test_release.py::test_a_copy_changed_in_place_while_its_release_"
            "waits_for_the_writer_is_shipped_again",
            "tests/test_release.py::test_a_copy_changed_in_place_while_a_release_was_interrupted_is_shipped_again",
        ),
    ),
    Mutant(
        "release-stamp-not-recorded",
        "a copy's stamp is not recorded when it is verified: the re-check before its release has nothing"
        " to compare with",
        "acqd/pipeline.py",
        "            row = await self._j(self.journal.record_verified, row.id, tier.name, dest, stamp)\n",
        "            row = await self._j(self.journal.record_verified, row.id, tier.name, dest)\n",
        (
            "tests/test_release.py::test_a_copy_changed_in_place_while_its_release_"
            "waits_for_the_writer_is_shipped_again",
        ),
    ),
    Mutant(
        "release-before-manifest",
        "a source is released before the session manifest at the destination lists its copy: a takeover"
        " or a lost journal in that moment leaves the copy known to no record",
        "acqd/pipeline.py",
        "        if listed is not None and listed.get(row.id) == row.updated:\n            return False\n",
        "        if True:\n            return False\n",
        ("tests/test_release.py::test_a_file_is_released_only_once_its_session_manifest_lists_it",),
    ),
    Mutant(
        "tiff-chain-past-end",
        "a TIFF whose IFD chain runs past the file's end (an ImageJ stack cut short: tifffile shows one"
        " page and only logs the rest; a stack written plane by plane, paused or cut) is stored as the pages"
        " tifffile found: a short stack under the file's name, even while its writer is still at work",
        "acqd/readers/tiff.py",
        '    if ended == "runs past the end":\n',
        "    if False:\n",
        (
            "tests/test_frames.py::test_a_tiff_whose_pages_are_not_all_its_images_is_stored_byte_exact"
            "[_cut_imagej_tiff-runs past the end]",
            "tests/test_frames.py::test_a_tiff_whose_pages_are_not_all_its_images_is_stored_byte_exact"
            "[_cut_stack-runs past the end]",
            "tests/test_robust.py::test_a_tiff_stack_paused_mid_write_is_waited_for_and_stored_whole",
        ),
    ),
    Mutant(
        "tiff-subifds-as-frames",
        "a TIFF with sub-IFDs (a pyramid's reduced levels) is stored as frames: the view shows one level",
        "acqd/readers/tiff.py",
        "        if 330 in p.tags:",
        "        if False:",
        (
            "tests/test_frames.py::test_a_tiff_whose_pages_are_not_all_its_images_i"
            "s_stored_byte_exact[_pyramid-sub-IFDs]",
        ),
    ),
    Mutant(
        "tiff-orphan-planes-as-frames",
        "an uncompressed TIFF holding a page's worth of pixels no page points to is stored as its pages:"
        " the view shows fewer planes than the file has",
        "acqd/readers/tiff.py",
        "            if stretch >= threshold:",
        "            if False:",
        (
            "tests/test_frames.py::test_a_tiff_whose_pages_are_not_all_its_images_is_stored_byte_exact"
            "[_orphan_planes-neither pixels nor tags]",
        ),
    ),
    Mutant(
        "unframed-zstd-probe-overlap",
        "the zstd trial of a file that is not frames samples overlapping spans of a small file: an"
        " incompressible file is stored in a zstd frame larger than itself",
        "acqd/layouts/frames.py",
        "        if size <= 3 * ZSTD_PROBE:",
        "        if False:",
        ("tests/test_frames.py::test_an_incompressible_file_that_is_not_frames_is_never_stored_larger",),
    ),
    Mutant(
        "internal-quarantine-never-retried",
        "a file quarantined by an internal error is never tried again (it does not change): a fixed"
        " configuration or an upgrade leaves it quarantined for ever",
        "acqd/journal.py",
        'if (reason or "").endswith(marker)]',
        "if False]",
        ("tests/test_frames.py::test_a_file_quarantined_by_an_internal_error_is_tried_again_at_the_next_start",),
    ),
    Mutant(
        "verify-ignores-manifests",
        "acqd verify checks the copies but not the session manifests beside them: a manifest deleted or"
        " missing entries (the record a takeover or a lost journal is rebuilt from) passes unnoticed",
        "acqd/cli.py",
        "            stale = check_manifests(tiers, pairs, marked, whole)\n",
        "            stale = []\n",
        (
            "tests/test_fixity.py::test_verify_finds_a_session_manifest_missing_or_"
            "out_of_date_and_the_daemon_writes_it_again",
        ),
    ),
    Mutant(
        "marked-manifests-wait-for-restart",
        "the running daemon never looks at the sessions the journal marks to be written again: a manifest"
        " verify found missing stays missing until the next start",
        "acqd/pipeline.py",
        "            marked = await self._j(self.journal.dirty_manifests)\n",
        "            marked = []\n",
        (
            "tests/test_fixity.py::test_verify_finds_a_session_manifest_missing_or_"
            "out_of_date_and_the_daemon_writes_it_again",
        ),
    ),
    Mutant(
        "moved-copy-manifest-stale",
        "a retention purge (or the old copy of a move) leaves the session manifest as it was: the record a"
        " takeover or a lost journal is rebuilt from lists a copy that is gone",
        "acqd/journal.py",
        "        db.execute(_SESSION_DIRTY, (fid,))\n        db.execute(_ROW_NEWER, (j._clock(), fid))\n"
        "        j._audit(fid, action",
        "        db.execute(_ROW_NEWER, (j._clock(), fid))\n        j._audit(fid, action",
        ("tests/test_retention.py::test_seventy_five_days_of_a_facility",),
    ),
    Mutant(
        "unfinished-at-rest-quarantined",
        "a file whose format says more is to come (a TIFF chain past its end, an MRC with more bytes than its"
        " header counts) and that no process writes any more is quarantined: never shipped anywhere, the"
        " acquisition disk never freed of it",
        "acqd/pipeline.py",
        "            if isinstance(exc, UnfinishedFormatError) and not c.at_rest:",
        "            if False:",
        (
            "tests/test_frames.py::test_an_mrc_with_more_bytes_than_its_header_counts_is_stored_byte_exact",
            "tests/test_frames.py::test_a_tiff_whose_pages_are_not_all_its_images_is_stored_byte_exact"
            "[_cut_stack-runs past the end]",
        ),
    ),
    Mutant(
        "release-stamp-size-and-mtime-only",
        "a local copy's stamp is its size and mtime alone: a copy written again in place with its mtime put"
        " back (os.utime), or replaced by a rename with both kept, passes the release's check",
        "acqd/storage/base.py",
        '            return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}:{st.st_ctime_ns}"\n',
        '            return f"{st.st_size}:{st.st_mtime_ns}"\n',
        (
            "tests/test_release.py::test_a_copy_changed_in_place_while_its_release_"
            "waits_for_the_writer_is_shipped_again",
        ),
    ),
    Mutant(
        "adopted-copy-not-read-back",
        "a copy known from a manifest alone (acqd adopt) is released on its size: a copy the NAS damaged"
        " before the takeover is all that is left of the file",
        "acqd/recheck.py",
        " or (copy.stamp is None and now is not None and not just_verified):",
        ":",
        ("tests/test_names.py::test_a_copy_adopted_from_a_manifest_is_read_back_before_its_first_release",),
    ),
    Mutant(
        "release-begun-on-any-row",
        "a release is begun on a row acqd verify found the copy of damaged since the daemon looked at it:"
        " the source is deleted with only the damaged copy left",
        "acqd/journal.py",
        "            if row.state is not State.VERIFIED:\n                raise IllegalTransition(row.state,",
        "            if False:\n                raise IllegalTransition(row.state,",
        ("tests/test_journal.py::test_a_release_is_begun_only_on_a_verified_row_and_its_end_marks_the_manifest",),
    ),
    Mutant(
        "released-manifest-not-marked",
        "a release is recorded without marking its session manifest in the journal: a crash right after"
        " leaves the manifest saying the file is still on the acquisition disk",
        "acqd/journal.py",
        "                # the manifest says each file's state: written again, also after a crash right now\n"
        "                db.execute(\n",
        "                # the manifest says each file's state: written again, also after a crash right now\n"
        "                0 and db.execute(\n",
        ("tests/test_journal.py::test_a_release_is_begun_only_on_a_verified_row_and_its_end_marks_the_manifest",),
    ),
    Mutant(
        "adopt-claims-after-import",
        "acqd adopt imports the manifests before the daemon still running there is stopped by a claim: the"
        " files it releases meanwhile are known to no journal",
        "acqd/claims.py",
        "    for tier in tiers.values():\n        write_claim(tier, claim, replace=True)\n    time.sleep(ADOPT_GRACE)",
        "    time.sleep(0)",
        ("tests/test_names.py::test_every_file_released_during_a_takeover_is_known_to_the_new_journal",),
    ),
    Mutant(
        "adopt-on-the-manifests-tier",
        "acqd adopt records every copy on the tier its manifest is on, not the one its entry names (a"
        " policy's placement): restore and verify look for it where it is not",
        "acqd/journal.py",
        '                tier = str(e["tier"]) if isinstance(e.get("tier"), str) else manifest_tier\n',
        "                tier = manifest_tier\n",
        ("tests/test_retention.py::test_policy_rules_place_files",),
    ),
    Mutant(
        "scan-retry-waits-for-interval",
        "a scan whose journal write failed (the state disk full) is done again only at the next scan"
        " interval (60 s, 5 min; never with --once), though the log says 5 s",
        "acqd/pipeline.py",
        "            soon()  # one the scans just made fail: its retry,",
        "            0  # one the scans just made fail: its retry,",
        ("tests/test_inprocess.py::test_a_scan_whose_journal_write_failed_is_done_again_soon",),
    ),
    Mutant(
        "unrecorded-scan-counted-done",
        "run --once counts a scan whose findings the journal could not record as done: it ends 0, idle,"
        " having recorded and shipped nothing",
        "acqd/pipeline.py",
        "                if ctx.index in self._unrecorded:",
        "                if False:",
        ("tests/test_inprocess.py::test_once_with_a_journal_that_cannot_record_the_scan_ends_with_an_error",),
    ),
    Mutant(
        "verify-ignores-metadata",
        "verify compares a frame copy's pixels only: a changed pixel size or unit (zarr.json's scale, a"
        " TIFF's resolution tags), its size kept, passes",
        "acqd/layouts/frames.py",
        "    if expected.meta_checksum is None:\n        return\n",
        "    if True:\n        return\n",
        ("tests/test_fixity.py::test_verify_finds_a_changed_calibration",),
    ),
    Mutant(
        "meta-checksum-not-recorded",
        "a frame copy's metadata checksum is not taken when it is written: verify has nothing to compare"
        " its calibration with",
        "acqd/pipeline.py",
        "            if meta_of is not None and res.meta_checksum is None:",
        "            if False:",
        ("tests/test_fixity.py::test_verify_finds_a_changed_calibration",),
    ),
    Mutant(
        "purge-mark-cleared-by-a-flush",
        "a retention purge or move during a manifest flush marks the session without a newer row: the"
        " flush clears the mark, and the manifest keeps listing the purged copy",
        "acqd/journal.py",
        "        db.execute(_ROW_NEWER, (j._clock(), fid))\n        j._audit(fid, action",
        "        j._audit(fid, action",
        ("tests/test_journal.py::test_a_copy_moved_or_purged_during_a_manifest_write_keeps_its_session_marked",),
    ),
    Mutant(
        "unfinished-adopt-runs",
        "a journal whose adopt claimed the prefix and did not finish its import is run: the session"
        " manifests are written again without the copies not imported (released files: in no record)",
        "acqd/daemon.py",
        "                if refusal is not None:  # an adopt claimed the prefix and did not import everything",
        "                if False:  # an adopt claimed the prefix and did not import everything",
        ("tests/test_names.py::test_an_adopt_stopped_half_way_leaves_nothing_to_run_until_one_finishes",),
    ),
    Mutant(
        "adopt-renamed-tier-imports-nothing",
        "adopt skips every entry whose tier the configuration does not name (a tier renamed): it imports"
        " nothing and claims the prefix all the same",
        "acqd/claims.py",
        '    fits = [e if e.get("tier") in known else {**e, "tier": name} for e in fits]',
        '    fits = [e for e in fits if e.get("tier") in known]',
        ("tests/test_names.py::test_an_adopt_stopped_half_way_leaves_nothing_to_run_until_one_finishes",),
    ),
    Mutant(
        "older-journal-refused",
        "a read-only look at a journal an older acqd wrote fails until the daemon restarts (the columns"
        " added since are not read as empty)",
        "acqd/journal.py",
        "        for table, columns in missing.items():\n            extra",
        "        for table, columns in missing.items():\n"
        '            raise JournalError(f"older journal: {table}")\n'
        "            extra",
        ("tests/test_journal.py::test_a_journal_an_older_acqd_wrote_is_read_as_it_is_and_left_unchanged",),
    ),
    Mutant(
        "frame-interval-dropped",
        "a time series' frame interval is not carried to the t axis (scale 1, no unit)",
        "acqd/layouts/frames.py",
        "        dt = stated(src.axis0_interval_s)\n",
        "        dt = None\n",
        ("tests/test_ngff.py::test_a_time_series_interval_is_carried_to_the_time_axis",),
    ),
    Mutant(
        "kept-bytes-bit-shuffled",
        "the bytes kept beside the frames are stored with the frames' shuffle (bit-shuffled headers)",
        "acqd/codec.py",
        '        return replace(self, shuffle="noshuffle") if self.id == "blosc" else self',
        "        return self",
        ("tests/test_codecs.py::test_the_bytes_kept_beside_the_frames_are_not_bit_shuffled",),
    ),
    Mutant(
        "release-wait-unmeasured",
        "a release held back (a writer, the manifest) is not counted in acqd_release_waiting_files",
        "acqd/pipeline.py",
        "            release_waiting=len(held),",
        "            release_waiting=0,",
        ("tests/test_robust.py::test_a_release_held_by_a_writer_shows_in_the_metrics_until_it_is_released",),
    ),
    Mutant(
        "release-only-on-placement-tier",
        "a release looks for a verified copy on the placement's tier only: a file verified on another"
        " configured tier is kept for ever",
        "acqd/pipeline.py",
        "    for cp in verified:\n        tier = tiers.get(cp.tier)",
        "    for cp in []:\n        tier = tiers.get(cp.tier)",
        (
            "tests/test_release.py::"
            "test_a_file_verified_on_a_tier_the_placement_no_longer_names_is_released_against_that_copy",
        ),
    ),
    Mutant(
        "chmod-ships-again",
        "a verified file whose change time alone moved (a chmod, a new link) is a new version, shipped again",
        "acqd/states.py",
        "                return Observed.RECHECK\n",
        "                return Observed.NEW_VERSION\n",
        (
            "tests/test_release.py::"
            "test_a_chmod_or_a_new_link_ships_nothing_again_and_a_rewrite_that_keeps_size_and_mtime_does",
        ),
    ),
    Mutant(
        "recheck-trusts-size-and-mtime",
        "a verified file whose change time alone moved is taken for the same file without comparing its"
        " content: a rewrite that put size and mtime back keeps the old copy, and a release deletes the new bytes",
        "acqd/pipeline.py",
        "            if found is not None and digest is not None and digest == found[0].checksum:",
        "            if found is not None:",
        (
            "tests/test_release.py::"
            "test_a_chmod_or_a_new_link_ships_nothing_again_and_a_rewrite_that_keeps_size_and_mtime_does",
        ),
    ),
    Mutant(
        "stream-restarts-at-a-writer-pause",
        "a streamed movie whose writer pauses longer than the settle window, the file still open, is"
        " shipped as a version and its stream begun again from frame 0",
        "acqd/pipeline.py",
        "STREAM_WRITER_PATIENCE = 120.0",
        "STREAM_WRITER_PATIENCE = 0.0",
        ("tests/test_stream.py::test_a_writer_pausing_longer_than_the_settle_window_keeps_its_stream",),
    ),
    Mutant(
        "unfollowed-stack-shipped-at-pause",
        "a movie that would be streamed but is not followed (every stream slot taken) is shipped as a"
        " version at each pause of its writer, the file still open",
        "acqd/pipeline.py",
        "        return c.key in self.follows or self._streams_here(c.ctx, c.rel)\n",
        "        return c.key in self.follows\n",
        ("tests/test_stream.py::test_stacks_beyond_the_stream_slots_also_wait_for_their_paused_writers",),
    ),
    Mutant(
        "verify-quarantine-uncounted",
        "the daemon never counts the journal's quarantined files: a quarantine by `acqd verify` reaches no"
        " metric and no alert",
        "acqd/daemon.py",
        "self.metrics.quarantined(await loop.run_in_executor(p.jexec, p.journal.quarantined_count))\n",
        "self.metrics.quarantined(0)\n",
        ("tests/test_service.py::test_a_quarantine_by_acqd_verify_reaches_the_running_daemons_gauge",),
    ),
    Mutant(
        "hold-records-into-any-folder",
        "`acqd hold` writes its records into a tier folder swapped for an empty one or claimed by another journal",
        "acqd/cli.py",
        "        each(ours)\n        each(read)\n",
        "        each(read)\n",
        ("tests/test_holdledger.py::test_hold_records_are_never_written_into_a_tier_folder_that_is_not_this_journals",),
    ),
    Mutant(
        "placement-error-stalls-admission",
        "a file whose placement cannot be built (a policy rule's codec its layout cannot store with) ends"
        " the scanner's round: nothing else is admitted, the scanner restarts for ever",
        "acqd/pipeline.py",
        "        try:\n            return self.placed(rel).release\n"
        "        except AcqdError:\n            return False\n",
        "        return self.placed(rel).release\n",
        ("tests/test_frames.py::test_a_placement_codec_its_layout_cannot_store_is_a_config_error[policy]",),
    ),
    Mutant(
        "placement-error-never-retried",
        "a file whose placement cannot be built is looked at again for ever, never counted as failing:"
        " `run --once` never ends",
        "acqd/pipeline.py",
        '            await self._retry(c, f"its placement cannot be built: {exc}", "placement")\n            return\n',
        "            raise\n",
        ("tests/test_frames.py::test_a_placement_codec_its_layout_cannot_store_is_a_config_error[policy]",),
    ),
    Mutant(
        "owner-page-release-counts-fewer-tiers",
        "the owner page's sync counts a release record against the tiers it wrote to, not all the daemon's:"
        " one tier's forged record lifts a hold",
        "acqd/cli.py",
        "    await loop.run_in_executor(jexec, holdledger.to_journal, j, seen, len(tiers))\n",
        "    await loop.run_in_executor(jexec, holdledger.to_journal, j, seen, len(mine_tiers))\n",
        (
            "tests/test_holdledger.py::"
            "test_the_owner_pages_sync_counts_a_release_only_on_every_tier_even_those_it_leaves_alone",
        ),
    ),
    Mutant(
        "unwatched-root-holds-a-name",
        "a row of a watch root no longer configured keeps the name it noted publishing: the same file from"
        " the root's new place is retried for ever",
        "acqd/journal.py",
        "                        and (roots is None or other[2] in roots)\n",
        "",
        ("tests/test_names.py::test_a_watch_folder_moved_after_an_unfinished_publication_ships_from_its_new_place",),
    ),
    Mutant(
        "lost-copy-never-tried",
        "restore never tries a copy recorded lost, even once it is back whole: the data cannot be had back",
        "acqd/cli.py",
        "                found = _lost_copy(j, source_path, version)\n",
        "                found = None\n",
        ("tests/test_fixity.py::test_a_copy_recorded_lost_that_is_back_whole_is_restored_and_a_damaged_one_is_not",),
    ),
    Mutant(
        "unfinished-released-at-once",
        "a file stored as it is although its format says more is to come is released as soon as verified:"
        " a writer's second part, appended after a pause, makes a fragment of its own",
        "acqd/pipeline.py",
        "        if proved or c.at_rest or c.grew:\n",
        "        if proved or c.grew:\n",
        ("tests/test_robust.py::test_a_tiff_stack_written_in_two_closed_parts_is_kept_for_its_second_part",),
    ),
    Mutant(
        "batch-holds-every-temporary-open",
        "a batch of small files keeps a descriptor open for each of its temporaries until its durability"
        " barrier: a few batches at once run out of descriptors",
        "acqd/storage/base.py",
        "                if barrier is not None and i in fds:  # syncfs makes it durable: no descriptor kept\n"
        "                    os.close(fds.pop(i))\n"
        "                elif len(fds) >= WRITE_MANY_OPEN:",
        "                if False:\n                    pass\n                elif False:",
        ("tests/test_release.py::test_a_release_of_thousands_of_files_holds_a_descriptor_per_folder_not_per_file",),
    ),
    Mutant(
        "stored-unverified-removed",
        "a copy recorded stored and not yet verified (a crash between) is removed and written again from the"
        " file as it is now: the earlier content's only copy lost when the file was replaced meanwhile",
        "acqd/pipeline.py",
        "            kept = await self._own_unverified(c, row, layout, tier, dest) if owner == row.id else None\n",
        "            kept = None\n"
        "            if owner == row.id:\n"
        "                await self._io(partial(tier.remove_any_if_there, tree=layout.suffix == '.zarr'), dest)\n",
        (
            "tests/test_names.py::test_a_crash_between_a_copys_record_and_its_verif"
            "ication_never_removes_an_earlier_content[one-file-replaced]",
            "tests/test_names.py::test_a_crash_between_a_copys_record_and_its_verif"
            "ication_never_removes_an_earlier_content[a-batch-replaced]",
        ),
    ),
    Mutant(
        "stored-unverified-adopted-for-changed-file",
        "a copy recorded stored and not yet verified is adopted for its file without hashing the file: a file"
        " changed since is recorded verified with the earlier content's checksum (and released)",
        "acqd/pipeline.py",
        "            same = digest == recorded.source_checksum\n",
        "            same = True\n",
        (
            "tests/test_names.py::test_a_crash_between_a_copys_record_and_its_verif"
            "ication_never_removes_an_earlier_content[one-file-appended]",
            "tests/test_names.py::test_a_crash_between_a_copys_record_and_its_verif"
            "ication_never_removes_an_earlier_content[one-file-replaced]",
        ),
    ),
    Mutant(
        "stored-unverified-adopted-by-name",
        "a copy recorded stored and not yet verified, of a file whose layout keeps no checksum of its bytes (a"
        " compressed TIFF), is adopted whatever the file's identity says: a file rewritten since is recorded"
        " verified with the earlier content's checksum",
        "acqd/pipeline.py",
        "            same = c.row.state is State.STORED and c.row.identity.same_content_as(c.stable)\n",
        "            same = True\n",
        (
            "tests/test_names.py::test_a_compressed_tiff_stored_before_a_crash_is_adopted_or_kept_not_compared_for_ever"
            "[rewritten]",
        ),
    ),
    Mutant(
        "stored-kept-unverified",
        "a copy of an earlier content kept after a crash is left unverified though it read back as recorded:"
        " the earlier version cannot be restored",
        "acqd/pipeline.py",
        "        nxt = await self._j(self.journal.keep_stored, row.id, tier.name, dest, matched, why)\n",
        "        nxt = await self._j(self.journal.keep_stored, row.id, tier.name, dest, False, why)\n",
        (
            "tests/test_names.py::test_a_crash_between_a_copys_record_and_its_verif"
            "ication_never_removes_an_earlier_content[one-file-replaced]",
        ),
    ),
    Mutant(
        "gone-stored-marked-vanished",
        "a file deleted by its owner after its copy was recorded stored and before it was verified (a crash"
        " between) is marked vanished unread: its only copy out of sight of `acqd restore` and `acqd verify`",
        "acqd/pipeline.py",
        "            if row.state is not State.STORED or copy is None:\n",
        "            if True:\n",
        ("tests/test_names.py::test_once_is_not_idle_while_a_file_is_looked_at_afresh[deleted]",),
    ),
    Mutant(
        "re-examined-file-not-busy",
        "a file looked at afresh leaves its flight before its journal work and is not held busy meanwhile:"
        " a `--once` run that looks idle then ends with the file pending (exit 1)",
        "acqd/pipeline.py",
        "        with self._busy_while():\n"
        '            log.info("re-examining %r: %s", c.rel, why)\n'
        '            await self._j(self.journal.audit, row.id, "re-examine", reason=why)\n'
        "            entry = await self._io(classify, c.ctx.root, c.rel)\n"
        "            self._land(c)\n",
        "        self._land(c)\n"
        "        with contextlib.nullcontext():\n"
        '            log.info("re-examining %r: %s", c.rel, why)\n'
        '            await self._j(self.journal.audit, row.id, "re-examine", reason=why)\n'
        "            entry = await self._io(classify, c.ctx.root, c.rel)\n",
        ("tests/test_names.py::test_once_is_not_idle_while_a_file_is_looked_at_afresh[replaced]",),
    ),
    Mutant(
        "changing-file-waited-for-ever",
        "`run --once` waits for a file that keeps changing (a log appended to, no writer seen) for as long as"
        " it changes, past --retry-for",
        "acqd/pipeline.py",
        "                or self._awaited.get(c.key) == c.row.id\n                or self._changing(c)\n",
        "                or self._awaited.get(c.key) == c.row.id\n",
        ("tests/test_robust.py::test_once_gives_up_on_a_file_still_changing_after_retry_for",),
    ),
    Mutant(
        "kept-unverified-unlisted",
        "a copy kept at the destination and never verified (stored before a crash, not as recorded, its file"
        " gone) is not named by `acqd status`: nobody learns it is there",
        "acqd/cli.py",
        '        for k in s.get("kept_unverified", [])[:20]\n',
        "        for k in []\n",
        ("tests/test_names.py::test_once_is_not_idle_while_a_file_is_looked_at_afresh[deleted-copy-damaged]",),
    ),
    Mutant(
        "release-refusal-unsaid",
        "a release the acquisition disk refuses (read-only, permission) is not reported: no event, no metric,"
        " no audit line, only a debug line",
        "acqd/pipeline.py",
        '        self._emit("release_failed", row, reason=reason)\n',
        "        pass\n",
        ("tests/test_faults.py::test_a_release_the_acquisition_disk_refuses_is_said_counted_and_listed",),
    ),
    Mutant(
        "release-refusal-exits-0",
        "`run --once --release` whose releases the acquisition disk refused exits 0: the disk it was to free fills",
        "acqd/daemon.py",
        "                if self.once and pipeline.stats.release_failed and code == 0:\n",
        "                if False:\n",
        ("tests/test_faults.py::test_a_release_the_acquisition_disk_refuses_is_said_counted_and_listed",),
    ),
    Mutant(
        "release-refusal-unlisted",
        "`acqd status` does not list the files whose release the acquisition disk refused",
        "acqd/journal.py",
        '        "release_failed": [{"path": r.relpath, "root": r.root, "reason": why}'
        " for r, why in journal.release_failed()],\n",
        '        "release_failed": [],\n',
        ("tests/test_faults.py::test_a_release_the_acquisition_disk_refuses_is_said_counted_and_listed",),
    ),
    Mutant(
        "gone-copy-unmounted-called-lost",
        "a gone file's copy, stored before a crash, is looked for without asking whether its tier is the claimed"
        " one: a share not mounted (its empty mount point) makes an intact only copy recorded lost for good",
        "acqd/pipeline.py",
        "                if self.guard is not None:  # on the claimed tier, not an empty mount point\n"
        "                    await self._io(self.guard, tier, True)\n"
        "                there = ",
        "                there = ",
        ("tests/test_names.py::test_a_gone_files_copy_on_a_share_not_mounted_is_looked_at_again_not_called_damaged",),
    ),
    Mutant(
        "gone-copy-metadata-unchecked",
        "a gone file's copy, stored before a crash, is read back without its metadata checksum: a copy whose"
        " calibration changed is recorded verified (and `acqd verify` then calls it corrupt)",
        "acqd/pipeline.py",
        "await self._io(reader.verify, tier, copy.dest, copy.as_result())",
        "await self._io(reader.verify, tier, copy.dest, replace(copy.as_result(), meta_checksum=None))",
        (
            "tests/test_names.py::test_a_copy_stored_before_a_crash_whose_metadata_changed_is_not_recorded_verified"
            "[file-deleted]",
        ),
    ),
    Mutant(
        "adopted-copy-metadata-unchecked",
        "a copy stored before a crash is adopted for its unchanged file without its metadata checksum: a copy"
        " whose calibration changed is recorded verified",
        "acqd/pipeline.py",
        "            await self._io(reader.verify, tier, dest, recorded)  # its data and its metadata as written\n",
        "            await self._io(reader.verify, tier, dest, replace(recorded, meta_checksum=None))\n",
        (
            "tests/test_names.py::test_a_copy_stored_before_a_crash_whose_metadata_changed_is_not_recorded_verified"
            "[file-kept]",
        ),
    ),
    Mutant(
        "gone-copy-missing-called-kept",
        "a gone file's copy, stored before a crash and not at the destination either, is listed as kept",
        "acqd/pipeline.py",
        "            lost = not there\n",
        "            lost = False\n",
        ("tests/test_names.py::test_once_is_not_idle_while_a_file_is_looked_at_afresh[deleted-copy-gone]",),
    ),
    Mutant(
        "changed-before-deadline-given-up",
        "`run --once` gives up on a file whose last change came before --retry-for's deadline, seen only at a"
        " later look (polled), and calls it still changing",
        "acqd/pipeline.py",
        "        return changed > time.time() - (self.mono() - c.born) + self.retry_for\n",
        "        return True\n",
        ("tests/test_robust.py::test_once_waits_out_the_settle_window_of_a_file_that_stopped_changing[poll]",),
    ),
    Mutant(
        "release-refusal-uncounted",
        "a release the acquisition disk refuses is not an outcome Prometheus counts: the AcqdReleaseFailed alert"
        " never fires",
        "acqd/metrics.py",
        '    "release_failed",\n    "copy_lost",\n',
        '    "copy_lost",\n',
        ("tests/test_faults.py::test_a_refused_release_is_an_event_and_a_metric",),
    ),
    Mutant(
        "tracker-round-not-busy",
        "a tracker round is not held busy: a file gone during its settle window, taken off the candidates while"
        " its stored copy is read back, lets a `--once` run end with its row pending (exit 1)",
        "acqd/pipeline.py",
        "            with self._busy_while():  # a file taken off the candidates",
        "            with contextlib.nullcontext():  # a file taken off the candidates",
        (
            "tests/test_names.py::test_once_is_not_idle_while_a_file_gone_during_it"
            "s_settle_window_has_its_copy_read_back",
        ),
    ),
    Mutant(
        "fei-extended-unread",
        "an FEI extended header is kept only in the restore bytes, not readable in the stored header",
        "acqd/readers/mrc.py",
        '        header["fei_extended"] = fei',
        "        pass",
        ("tests/test_frames.py::test_an_epu_movies_extended_header_is_readable_in_the_stored_copy",),
    ),
    Mutant(
        "vendor-tags-unread",
        "a TIFF's vendor tags (TVIPS, FEI, Zeiss) are kept only as bytes, not by name in the stored header",
        "acqd/readers/tiff.py",
        '        header["metadata"] = vendor',
        "        pass",
        ("tests/test_ngff.py::test_vendor_pixel_size_tags_calibrate_the_ome_zarr",),
    ),
    Mutant(
        "status-running-unsaid",
        "acqd status does not say whether a daemon runs (a stopped daemon's state reads as current)",
        "acqd/cli.py",
        '    lock = state_dir / "acqd.lock"\n',
        '    return None\n    lock = state_dir / "acqd.lock"\n',
        ("tests/test_cli.py::test_status_says_whether_the_daemon_is_running",),
    ),
    Mutant(
        "status-trusts-a-stale-lock-pid",
        "acqd status takes any process with acqd in its command line, of the pid a stopped daemon left in the"
        " lock file, for this state directory's daemon",
        "acqd/cli.py",
        "                return pid\n    return None\n",
        "                return pid\n    return pid\n",
        ("tests/test_cli.py::test_status_says_whether_the_daemon_is_running",),
    ),
    Mutant(
        "release-writers-not-asked-after-the-move",
        "a release does not ask for writers once its file is moved aside: a process that opened it in the"
        " moment before loses what it writes next",
        "acqd/unlink.py",
        "                    out[j] = finish_aside(a, a.key in written)",
        "                    out[j] = finish_aside(a, False)",
        ("tests/test_release.py::test_a_writer_that_opens_the_file_in_the_instant_before_its_unlink_keeps_it",),
    ),
    Mutant(
        "bind-mounted-tier-accepted",
        "a tier folder that is a bind mount of a folder inside the watch root passes the start's check",
        "acqd/daemon.py",
        "            if tier.local and any(lies_within(a, b) for a, b in",
        "            if tier.local and any(same_or_inside(a, b) for a, b in",
        ("tests/test_mounts.py::test_acqd_check_refuses_a_tier_bound_from_inside_the_watch_root",),
    ),
    Mutant(
        "release-counts-a-bind-mounted-copy",
        "a release counts a copy on a tier bound (after the start) from inside the watch root as one elsewhere",
        "acqd/pipeline.py",
        "        return next((c.root for c in self.roots if lies_within(path, c.root)), None)\n",
        "        import acqd.fsops\n\n"
        "        return next((c.root for c in self.roots if acqd.fsops.same_or_inside(path, c.root)), None)\n",
        (
            "tests/test_mounts.py::"
            "test_a_copy_on_a_tier_bound_from_inside_the_watch_root_after_the_start_releases_nothing",
        ),
    ),
    Mutant(
        "verify-counts-labels-as-damage",
        "verify counts every object of a Zarr store, a scientist's labels too: the store is called corrupt",
        "acqd/fixity.py",
        "tier.tree_size(tier.path(copy.dest), zarr_own) if zarr",
        "tier.tree_size(tier.path(copy.dest)) if zarr",
        ("tests/test_fixity.py::test_labels_a_scientist_adds_to_a_stored_zarr_are_no_damage_and_never_deleted",),
    ),
    Mutant(
        "release-check-counts-labels",
        "a release's check counts every object of a Zarr store: labels added make the copy lost",
        "acqd/recheck.py",
        "    size = tier.tree_size(tier.path(copy.dest), zarr_own) if tree else",
        "    size = tier.tree_size(tier.path(copy.dest)) if tree else",
        ("tests/test_fixity.py::test_labels_a_scientist_adds_to_a_stored_zarr_are_no_damage_and_never_deleted",),
    ),
    Mutant(
        "reship-deletes-foreign-objects",
        "writing a Zarr copy again deletes the store with the objects acqd did not write in it",
        "acqd/pipeline.py",
        '"damaged-rewritten", tier=tier.name, dest=dest, reason=why)\n'
        "            if tree:\n"
        "                await self._io(self._none_foreign, tier, dest)",
        '"damaged-rewritten", tier=tier.name, dest=dest, reason=why)\n            if tree:\n                pass',
        ("tests/test_fixity.py::test_labels_a_scientist_adds_to_a_stored_zarr_are_no_damage_and_never_deleted",),
    ),
    Mutant(
        "renamed-instrument-unsaid",
        "an instrument renamed in acqd.yaml is taken for a share not mounted (and `acqd adopt` is suggested)",
        "acqd/claims.py",
        "            old = _renamed_from(tier, claim)\n",
        "            old = None\n",
        ("tests/test_names.py::test_a_renamed_instrument_is_named_as_the_cause_and_refused",),
    ),
    Mutant(
        "vanished-before-its-temporary-is-removed",
        "a pending file found gone at a start is marked vanished even when its temporary could not be removed"
        " (never looked at again: the temporary stays for ever)",
        "acqd/pipeline.py",
        "                continue\n            if gone:\n",
        "                pass\n            if gone:\n",
        ("tests/test_release.py::test_a_stale_temporary_whose_cleanup_failed_once_is_removed_at_a_later_start",),
    ),
    Mutant(
        "release-opens-a-folder-per-file",
        "a release of many files opens the folder of each file on its own, between its move aside and its unlink"
        " (thousands of files run out of descriptors)",
        "acqd/unlink.py",
        "        fd = self._fds.get(key)\n",
        "        fd = None\n",
        ("tests/test_release.py::test_a_release_of_thousands_of_files_holds_a_descriptor_per_folder_not_per_file",),
    ),
    Mutant(
        "retention-warn-zero-accepted",
        "a rule that purges with `warn: 0d` is accepted: the purge follows its warning at once",
        "acqd/policy/model.py",
        "            if self.warn <= 0:\n",
        "            if False:\n",
        ("tests/test_policy.py::test_bad_policy_names_file_line_and_field",),
    ),
    Mutant(
        "retention-owner-address-unchecked",
        "an owner's e-mail address that is no address ('alice at x dot org') is accepted: warnings reach nobody,"
        " and the purges follow",
        "acqd/policy/model.py",
        "            if not is_address(address):\n",
        "            if False:\n",
        ("tests/test_policy.py::test_bad_policy_names_file_line_and_field",),
    ),
    Mutant(
        "retention-acts-on-an-unnamed-tier",
        "retention plans warnings, moves and purges of copies on a tier acqd.yaml no longer names (the sweep dies"
        " on it)",
        "acqd/retention.py",
        "        return self._on_named_tiers(actions, by_copy), by_copy, view.after.effective\n",
        "        return actions, by_copy, view.after.effective\n",
        ("tests/test_retention.py::test_copies_on_a_tier_taken_out_of_the_configuration_are_left_alone_and_said",),
    ),
    Mutant(
        "recheck-ignores-a-purged-copy",
        "a chmod of a source whose copy retention purged ships it again (the purge undone)",
        "acqd/pipeline.py",
        "            if found is None and copies:\n",
        "            if False:\n",
        ("tests/test_retention.py::test_a_chmod_of_a_source_whose_copy_was_purged_ships_nothing_again",),
    ),
    Mutant(
        "warning-names-one-subfolder",
        "a retention warning names the folder of one of the session's files, not the session's folder",
        "acqd/retention.py",
        "        folder = dest_dir\n        if rel_dir and",
        "        folder = dest_dir\n        if False and",
        ("tests/test_retention.py::test_a_warning_names_the_session_folder_not_one_subfolder",),
    ),
    Mutant(
        "adopt-skips-rows-without-a-copy",
        "`acqd adopt` skips a manifest entry whose file version the journal has as a row with no copy (a backup"
        " taken while it was in flight): the stale-journal stop then never clears",
        "acqd/journal.py",
        "                if known is not None:\n",
        "                if known is not None:\n                    continue\n",
        (
            "tests/test_names.py::"
            "test_a_journal_restored_from_a_backup_with_the_claim_deleted_writes_no_manifest_without_newer_files",
        ),
    ),
    Mutant(
        "manifest-written-by-a-stale-journal",
        "a journal older than the destination (restored from a backup, its claim deleted) writes its sessions'"
        " manifests again without the files shipped since",
        "acqd/pipeline.py",
        "                    stale = await self._stale_journal(ctx, session, ctx.tier.url(mpath), listed)\n",
        "                    stale = None\n",
        (
            "tests/test_names.py::"
            "test_a_journal_restored_from_a_backup_with_the_claim_deleted_writes_no_manifest_without_newer_files",
        ),
    ),
    Mutant(
        "uncompressed-tiff-rewritten",
        "an uncompressed TIFF whose strips are not exactly its pixels is stored as frames (restored as another file)",
        "acqd/readers/tiff.py",
        "    elif any(p.compression == 1 for p in every):\n",
        "    elif False:\n",
        ("tests/test_fidelity.py::test_an_uncompressed_tiff_whose_strips_are_not_its_pixels_is_stored_byte_exact",),
    ),
    Mutant(
        "reader-error-internal",
        "a reader tripping on contradicting header fields is an internal error tried for ever, not a quarantine",
        "acqd/readers/__init__.py",
        "    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as exc:\n",
        "    except ZeroDivisionError as exc:\n",
        ("tests/test_fidelity.py::test_a_reader_tripping_on_a_header_says_the_file_is_damaged",),
    ),
    Mutant(
        "tier-in-watch-root-shipped",
        "a tier's folder moved into the watch root is shipped, into itself, folder in folder",
        "acqd/pipeline.py",
        "            entries = [e for e in entries if not any(fenced(e.relpath, f) for f in fences)]\n",
        "            pass\n",
        ("tests/test_safeguards.py::test_a_tier_moved_into_the_watch_root_while_running_is_not_shipped_into_itself",),
    ),
    Mutant(
        "tier-path-built",
        "a tier path whose parent folder does not exist is built with mkdir -p on the local disk",
        "acqd/claims.py",
        "        if not known and (why := unmade_parent(tier)) is not None:\n",
        "        if False and (why := unmade_parent(tier)) is not None:\n",
        ("tests/test_config.py::test_a_tier_path_mistyped_two_levels_deep_is_refused_not_built",),
    ),
    Mutant(
        "source-on-tier-released",
        "a source lying on a local tier (its folder mounted into the watch root) is released: a stored copy unlinked",
        "acqd/pipeline.py",
        "        on = next((t for t in self.tiers.values() if t.local and lies_within(source, t.root)), None)\n",
        "        on = None\n",
        ("tests/test_mounts.py::test_a_source_that_lies_on_the_tier_is_never_released",),
    ),
    Mutant(
        "tier-bound-into-root-unseen",
        "a tier's folder mounted into the watch root is found by its path only, not through the mounts",
        "acqd/mounts.py",
        "        if not _below(point, real_root):  # the watch root itself too: a bind of a folder above a tier\n",
        "        if True:\n",
        (
            "tests/test_mounts.py::test_a_tier_seen_through_a_mount_below_the_watch_root_is_found",
            "tests/test_mounts.py::test_the_tier_bound_into_the_watch_root_is_refus"
            "ed_at_start_and_fenced_while_running",
        ),
    ),
    Mutant(
        "sftp-stamp-trusted",
        "an SFTP copy's stamp (size, mtime in whole seconds) is trusted before a release: no second read",
        "acqd/storage/sftp.py",
        "    stamps_show_rewrites = False  # SFTP's attributes: size and mtime in whole seconds, no inode or ctime\n",
        "    stamps_show_rewrites = True\n",
        ("tests/test_release.py::test_a_copy_changed_on_an_sftp_tier_while_its_release_waits_is_shipped_again",),
    ),
    Mutant(
        "own-unrecorded-copy-foreign",
        "a copy published before a crash and never recorded is taken for a foreign one once its file changed:"
        " the file is never shipped",
        "acqd/pipeline.py",
        "            if noted:\n                # an earlier attempt of this file noted publishing it",
        "            if False:\n                # an earlier attempt of this file noted publishing it",
        (
            "tests/test_names.py::test_a_crash_between_publish_and_journal_then_a_change_keeps_the_earlier_copy",
            "tests/test_names.py::test_an_object_put_under_a_name_after_a_failed_attempt_is_never_removed",
        ),
    ),
    Mutant(
        "unrecorded-object-removed",
        "an object under a file's name that an unfinished attempt of the file had noted is removed before the"
        " file is written again (an only copy of earlier content, or somebody else's object, lost)",
        "acqd/pipeline.py",
        "                nxt = await self._j(self.journal.keep_unrecorded, row.id, tier.name, dest, str(why))\n",
        "                await self._io(partial(tier.remove_any, tree=layout.suffix == '.zarr'), dest)\n"
        "                raise TransientError('removed')\n"
        "                nxt = await self._j(self.journal.keep_unrecorded, row.id, tier.name, dest, str(why))\n",
        (
            "tests/test_names.py::test_an_object_put_under_a_name_after_a_failed_attempt_is_never_removed",
            "tests/test_names.py::test_a_crash_between_publish_and_journal_then_a_change_keeps_the_earlier_copy",
        ),
    ),
    Mutant(
        "empty-open-file-quarantined",
        "an empty file a writer holds open (its first frame still to come) is quarantined as a zero-byte file",
        "acqd/pipeline.py",
        "            if await self._being_written(c):  # created, not written yet",
        "            if False:  # created, not written yet",
        ("tests/test_release.py::test_an_empty_file_a_writer_holds_open_is_waited_for_not_quarantined",),
    ),
    Mutant(
        "interrupted-release-said-done",
        "a file changed in place while its release was interrupted is recorded and said removed at the restart",
        "acqd/pipeline.py",
        "            elif await self._io(_same_inode, path, row.identity):",
        "            elif False:",
        ("tests/test_release.py::test_a_file_changed_in_place_while_its_release_was_interrupted_is_not_said_removed",),
    ),
    Mutant(
        "batch-log-lines-unprefixed",
        "a batch's outcomes, one log record of one line per file, have the time and level on their first"
        " line only (the other files' lines read as no entry of their own)",
        "acqd/logs.py",
        "        if not getattr(record, LINES, False):\n",
        "        if True:\n",
        (
            "tests/test_bad_inputs.py::test_a_batch_of_small_files_is_one_log_line_"
            "per_file_each_with_its_time_and_level",
            "tests/test_pure.py::test_a_batch_record_is_a_line_per_file_and_a_traceback_keeps_its_lines",
        ),
    ),
    Mutant(
        "batch-metrics-counted-once",
        "a batch's files add one to acqd_files_total, not one each",
        "acqd/metrics.py",
        "            n[0] += 1\n",
        "            n[0] = 1\n",
        ("tests/test_service.py::test_live_metrics_scraped_by_promtool_and_prometheus",),
    ),
    Mutant(
        "traceback-lines-prefixed",
        "every line of a record is given its time and level, a traceback's too (one exception reads as many"
        " entries; a log shipper joining a traceback to its line no longer does)",
        "acqd/logs.py",
        "        if not getattr(record, LINES, False):\n",
        '        if "\\n" not in message:\n',
        ("tests/test_pure.py::test_a_batch_record_is_a_line_per_file_and_a_traceback_keeps_its_lines",),
    ),
    Mutant(
        "log-escape-sequences-raw",
        "a file name's control characters other than line breaks (an ESC) are written to the log raw: an"
        " escape sequence in a name reaches the operator's terminal",
        "acqd/logs.py",
        '_BREAKS = re.compile("[\\x00-\\x08\\x0a-\\x1f\\x7f-\\x9f\\u2028\\u2029]")\n',
        '_BREAKS = re.compile("[\\n\\r\\x0b\\x0c\\x1c\\x1d\\x1e\\x85\\u2028\\u2029]")\n',
        (
            "tests/test_bad_inputs.py::test_a_batch_of_small_files_is_one_log_line_"
            "per_file_each_with_its_time_and_level",
        ),
    ),
    Mutant(
        "status-reason-raw",
        "`acqd status` prints a retried file's reason as it is: a name's line break splits its line, an escape"
        " sequence in it reaches the terminal",
        "acqd/cli.py",
        "            print(f\"  {f['path']!r}: {f['attempts']} attempt(s) since {_at(f['since'])}: "
        "{one_line(f['reason'] or '')}\")\n",
        "            print(f\"  {f['path']!r}: {f['attempts']} attempt(s) since {_at(f['since'])}: {f['reason']}\")\n",
        ("tests/test_cli.py::test_status_says_each_tiers_copies_and_the_files_retried",),
    ),
    Mutant(
        "frame-imports-despite-copies-only",
        "a daemon whose watch roots only copy imports the frame layouts' libraries all the same (0.3-0.5 s of CPU"
        " taken from the first files' shipping)",
        "acqd/daemon.py",
        "                if reads_frames(roots) or await loop.run_in_executor(jexec, journal.has_frame_copies):\n",
        "                if True:\n",
        (
            "tests/test_framepool.py::test_a_daemon_that_only_copies_imports_none_of_the_frame_libraries",
            "tests/test_inprocess.py::test_a_copy_in_a_frame_layout_from_an_earlier"
            "_run_has_the_frame_libraries_imported_before_it_is_read",
        ),
    ),
    Mutant(
        "frame-copies-read-without-imports",
        "a copy-only daemon whose journal holds copies in a frame layout reads them back (a release's check)"
        " without the frame libraries imported first: I/O threads race to import zarr",
        "acqd/daemon.py",
        "                if reads_frames(roots) or await loop.run_in_executor(jexec, journal.has_frame_copies):\n",
        "                if reads_frames(roots):\n",
        (
            "tests/test_inprocess.py::test_a_copy_in_a_frame_layout_from_an_earlier"
            "_run_has_the_frame_libraries_imported_before_it_is_read",
        ),
    ),
    Mutant(
        "frame-imports-not-on-reload",
        "a reload that names a frame detector for a root that only copied leaves the frame libraries to the I/O"
        " threads' first use",
        "acqd/daemon.py",
        "        if pipeline.imports is None and reads_frames([f for _, f in fresh]):\n",
        "        if False:\n",
        (
            "tests/test_inprocess.py::test_a_reload_that_gives_a_watch_root_a_frame"
            "_detector_imports_the_frame_libraries_first",
            "tests/test_inprocess.py::test_a_reload_that_needs_the_frame_libraries_of_a_broken_installation_is_refused",
        ),
    ),
    Mutant(
        "reload-keeps-old-layout",
        "a reload without a retention policy changes a root's detector profile but keeps the layouts and the"
        " placement built for the old one (a new camera's movies read by the old camera's reader, quarantined)",
        "acqd/daemon.py",
        "            ctx.layout, ctx.frames, ctx.release, ctx.stream = f.layout, f.frames, f.release, f.stream\n",
        "",
        ("tests/test_inprocess.py::test_a_reload_without_a_policy_applies_the_new_detector_and_placement",),
    ),
    Mutant(
        "reload-onto-tier-not-running",
        "a reload that places files on a tier it adds (not running until a restart) is applied: every admission"
        " fails with a KeyError, nothing ships until a restart",
        "acqd/daemon.py",
        "        if missing := sorted(named - set(self._tiers)):\n",
        "        if missing := []:\n",
        ("tests/test_inprocess.py::test_a_reload_naming_a_tier_that_is_not_running_is_refused_and_shipping_goes_on",),
    ),
    Mutant(
        "reload-keeps-removed-policys-placer",
        "a reload that removes the policy keeps its placements: a root reloaded to release nothing has its files"
        " deleted after verification",
        "acqd/daemon.py",
        "            ctx.placer = f.placer  # None: the policy removed, each root's own placement from now on\n",
        "            ctx.placer = f.placer or ctx.placer\n",
        ("tests/test_inprocess.py::test_a_reload_that_removes_the_policy_places_files_by_the_roots_own_placement",),
    ),
    Mutant(
        "listed-release-despite-placement",
        "a batch's releases go on to their checks after a reload turned release off: those that waited for their"
        " session manifest wait again, for ever, the manifest rewritten again and again",
        "acqd/pipeline.py",
        "        due = [x for x in due if x[0].ctx.releases(x[1].relpath)]\n",
        "",
        (
            "tests/test_inprocess.py::test_releases_waiting_for_their_manifest_when"
            "_a_reload_turns_release_off_are_dropped",
        ),
    ),
    Mutant(
        "ignored-file-released",
        "a file a reload's ignore rule covers, taken by acqd before, is deleted after its copy is verified",
        "acqd/pipeline.py",
        "        if p.release and self.ignored_path(rel):  # ignored since acqd took it (a reload's rule): its\n",
        "        if False:\n",
        ("tests/test_inprocess.py::test_a_file_a_reload_ignores_while_acqd_tracks_it_is_never_released",),
    ),
    Mutant(
        "batch-named-by-new-layout",
        "a batch of small files names its copies by the placement after a reload, writes them with the one before:"
        " raw bytes under a `~.zst` name, zstd frames under a plain one",
        "acqd/pipeline.py",
        "            dest = self._dest(c.ctx, row, layout)  # the batch's layout: a reload meanwhile changes not"
        " its names\n",
        "            dest = self._dest(c.ctx, row)\n",
        (
            "tests/test_inprocess.py::test_a_reload_during_a_batch_of_small_files_n"
            "ames_each_copy_by_the_layout_it_is_written_with",
        ),
    ),
    Mutant(
        "release-despite-reload-together",
        "a batch's release under way when a reload sets `release_local: never` deletes the files all the same",
        "acqd/pipeline.py",
        "        ready = [x for x in ready if x[0].ctx.releases(x[1].relpath)]  # a reload during the checks: kept\n",
        "",
        ("tests/test_inprocess.py::test_a_reload_during_a_releases_checks_keeps_the_files_it_says_to_keep",),
    ),
    Mutant(
        "release-despite-reload-one",
        "one file's release under way when a reload sets `release_local: never` deletes it all the same",
        "acqd/pipeline.py",
        "        if not ctx.releases(row.relpath):  # a reload during the checks: its placement keeps it now\n",
        "        if False:\n",
        ("tests/test_inprocess.py::test_a_reload_during_a_releases_checks_keeps_the_files_it_says_to_keep",),
    ),
    Mutant(
        "batch-frame-layout-assert",
        "a batch of small files that a reload placed in a frame layout meets an assertion (a traceback, then"
        " each file alone) instead of going to the one-file path at once",
        "acqd/pipeline.py",
        "        if not isinstance(layout, CopyLayout):  # a reload placed them otherwise since: each file alone\n"
        "            return cs, [], []\n",
        "        assert isinstance(layout, CopyLayout)\n",
        ("tests/test_inprocess.py::test_a_batch_a_reload_places_in_a_frame_layout_ships_each_file_alone",),
    ),
    Mutant(
        "reload-import-failure-stops-daemon",
        "a reload whose frame libraries cannot be imported (a broken installation) escapes as an error of the"
        " reload's signal handler instead of being refused with the running configuration kept",
        "acqd/daemon.py",
        "            try:\n                warm_imports()\n            except Exception as exc:\n",
        "            warm_imports()\n            try:\n                pass\n            except Exception as exc:\n",
        ("tests/test_inprocess.py::test_a_reload_that_needs_the_frame_libraries_of_a_broken_installation_is_refused",),
    ),
    Mutant(
        "retention-sweep-before-imports",
        "a retention sweep reads copies through their frame layouts on the I/O threads while the frame libraries"
        " are still being imported on their own thread",
        "acqd/daemon.py",
        "            if imports is not None:  # a move reads copies through their layouts on the I/O threads\n",
        "            if False:\n",
        ("tests/test_inprocess.py::test_a_retention_sweep_waits_for_the_frame_libraries_import",),
    ),
    Mutant(
        "frame-imports-by-reader-alone",
        "a root whose detector reads frames but whose placement copies them (no policy to place them otherwise)"
        " has the frame libraries imported all the same",
        "acqd/daemon.py",
        '    return any(ctx.frames is not None or (ctx.placer is not None and ctx.profile.reader != "bytes")'
        " for ctx in roots)\n",
        '    return any(ctx.profile.reader != "bytes" for ctx in roots)\n',
        ("tests/test_framepool.py::test_a_daemon_that_only_copies_imports_none_of_the_frame_libraries",),
    ),
    Mutant(
        "frame-copies-found-by-scan",
        "whether any copy is in a frame layout is answered by reading every copy of the journal at each start"
        " (no partial index)",
        "acqd/journal.py",
        "CREATE INDEX IF NOT EXISTS copies_framed ON copies(layout) WHERE layout != 'copy';\n",
        "",
        ("tests/test_journal.py::test_copies_in_a_frame_layout_are_told_apart_from_a_journal_of_copies_alone",),
    ),
)


@dataclass
class Result:
    id: str
    description: str
    tests: list[str]
    result: str  # caught, survived, skipped, timeout, error
    seconds: float
    caught_by: list[str] = field(default_factory=list)
    detail: str = ""


class NoLongerApplies(SystemExit):
    pass


def _apply(text: str, m: Mutant) -> str:
    n = text.count(m.snippet)
    if n == 0:
        raise NoLongerApplies(f"mutant {m.id} no longer applies: snippet not found in {m.file}")
    if n > 1:
        raise NoLongerApplies(f"mutant {m.id} no longer applies: snippet found {n} times in {m.file}")
    return text.replace(m.snippet, m.replacement)


def _files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def _scratch(files: list[str]) -> Path:
    root = Path(tempfile.mkdtemp(prefix="acqd-mutant-"))
    for rel in files:
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst)
    return root


def _env(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), *filter(None, [env.get("PYTHONPATH")])])
    if "/usr/sbin" not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = env.get("PATH", "") + os.pathsep + "/usr/sbin"
    env.pop("ACQD_CRASH_AT", None)
    return env


def _check_imports(scratch: Path, env: dict[str, str], m: Mutant | None) -> None:
    """A child started the way the tests start the daemon (`sys.executable`, this environment)
    imports acqd from the scratch copy, and the mutated module carries the replacement."""
    if m is not None and not m.file.endswith(".py"):  # a data file (alert rules ...): read from the scratch copy
        if m.snippet in (scratch / m.file).read_text():
            raise SystemExit(f"import-path check failed: the mutated {m.file} still carries the original")
        return
    module = (m.file if m else "acqd/__init__.py").removesuffix(".py").replace("/", ".").removesuffix(".__init__")
    probe = f"import importlib; print(importlib.import_module({module!r}).__file__)"
    r = subprocess.run([sys.executable, "-c", probe], cwd=scratch, env=env, capture_output=True, text=True)
    got = Path(r.stdout.strip()).resolve() if r.returncode == 0 else None
    want = (scratch / (m.file if m else "acqd/__init__.py")).resolve()
    if got != want:
        raise SystemExit(f"import-path check failed: {module} imports from {got or r.stderr.strip()}, not {want}")
    if m is not None and m.replacement and m.replacement not in want.read_text():
        raise SystemExit(f"import-path check failed: the mutated {m.file} does not carry mutant {m.id}")


def _junit(path: Path) -> tuple[list[str], int, int, str]:
    """(failed test ids, tests run, tests skipped, the first failure's message) from pytest's junit XML."""
    if not path.exists():
        return [], 0, 0, ""
    failed: list[str] = []
    run = skipped = 0
    why = ""
    for case in ET.parse(path).getroot().iter("testcase"):
        run += 1
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is not None:
            failed.append(name)
            why = why or " ".join(str(bad.get("message", "")).split())[:300]
        elif case.find("skipped") is not None:
            skipped += 1
    return failed, run, skipped, why


def _pytest(scratch: Path, env: dict[str, str], tests: list[str], timeout: float) -> tuple[int | None, Path, str]:
    xml = scratch / ".mutant-junit.xml"
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}", *tests]
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = subprocess.Popen(cmd, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        finally:
            if proc.poll() is None or code is None:
                with contextlib.suppress(ProcessLookupError):  # pytest and the daemons it started
                    os.killpg(proc.pid, signal.SIGKILL)  # (this run's own process group)
                proc.wait()
        log.seek(0)
        tail = log.read()[-3000:]
    return code, xml, tail


def run_one(m: Mutant | None, tests: list[str], files: list[str], timeout: float, keep: bool) -> Result:
    """Apply `m` (None: the baseline, no mutant) in a fresh scratch copy and run `tests` there."""
    scratch = _scratch(files)
    t0 = time.monotonic()
    try:
        if m is not None:
            target = scratch / m.file
            target.write_text(_apply(target.read_text(), m))
        env = _env(scratch)
        _check_imports(scratch, env, m)
        code, xml, tail = _pytest(scratch, env, tests, timeout)
        failed, ran, skipped, why = _junit(xml)
    finally:
        if keep:
            print(f"scratch copy kept: {scratch}", flush=True)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    seconds = round(time.monotonic() - t0, 1)
    mid, desc = (m.id, m.description) if m else ("baseline", "no mutant: every listed test must pass")
    if m is None:
        ok = code == 0 and not failed
        return Result(mid, desc, tests, "passed" if ok else "failed", seconds, failed, "" if ok else tail[-1500:])
    if code is None:
        verdict, detail = "timeout", f"no verdict within {timeout:g}s"
    elif failed:
        verdict, detail = "caught", why  # kept in the JSON: caught for the right reason?
    elif code == 0 and ran and skipped == ran:
        verdict, detail = "skipped", "every test skipped (a server or program missing?)"
    elif code == 0:
        verdict, detail = "survived", ""
    else:
        verdict, detail = "error", f"pytest exited {code}: {tail[-800:]}"
    return Result(mid, desc, tests, verdict, seconds, failed, detail)


def _table(results: list[Result]) -> str:
    rows = ["| mutant | what is taken away | tests that must catch it | result | seconds |", "|---|---|---|---|---|"]
    for r in results:
        tests = "<br>".join(f"`{t.removeprefix('tests/')}`" for t in r.tests)
        rows.append(f"| `{r.id}` | {r.description} | {tests} | **{r.result}** | {r.seconds:g} |")
    return "\n".join(rows)


def _recorded_table() -> str:
    """Every mutant of today's list with its latest recorded run (results file), in the list's order; a
    mutant never run says so."""
    runs = {m["id"]: m for m in json.loads(RESULTS.read_text()).get("mutants", [])} if RESULTS.exists() else {}
    rows = [
        "| mutant | what is taken away | tests that must catch it | result | seconds | commit |",
        "|---|---|---|---|---|---|",
    ]
    for m in MUTANTS:
        tests = "<br>".join(f"`{t.removeprefix('tests/')}`" for t in m.tests)
        r = runs.get(m.id)
        if r is None:
            rows.append(f"| `{m.id}` | {m.description} | {tests} | **not run** | | |")
        else:
            rows.append(
                f"| `{m.id}` | {m.description} | {tests} | **{r['result']}** | {r['seconds']:g} | `{r['commit']}` |"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench mutants", description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", metavar="ID", help="run this mutant only (repeatable)")
    ap.add_argument("--list", action="store_true", help="list the mutants and their tests")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutant (default 900)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the unmutated run of the tests first")
    ap.add_argument("--keep", action="store_true", help="keep the scratch copies (printed) for a post-mortem")
    ap.add_argument(
        "--table", action="store_true", help="print RELIABILITY.md's table from the results file (runs nothing)"
    )
    args = ap.parse_args(argv)
    known = {m.id: m for m in MUTANTS}
    if args.table:
        print(_recorded_table())
        return
    if args.list:
        for m in MUTANTS:
            print(f"{m.id:24} {m.description}\n{'':24} {m.file}; caught by: {', '.join(m.tests)}")
        return
    unknown = [i for i in args.only or [] if i not in known]
    if unknown:
        raise SystemExit(f"unknown mutant {unknown[0]!r}; known: {', '.join(known)}")
    chosen = [known[i] for i in args.only] if args.only else list(MUTANTS)
    for m in chosen:  # every snippet still applies, before anything runs
        _apply((REPO / m.file).read_text(), m)
    files = _files()
    results: list[Result] = []
    if not args.no_baseline:  # without a mutant, every test must pass, or "caught" means nothing
        tests = sorted({t for m in chosen for t in m.tests})
        base = run_one(None, tests, files, args.timeout * 2, args.keep)
        print(f"baseline (no mutant, {len(tests)} tests): {base.result} in {base.seconds:g}s", flush=True)
        if base.result != "passed":
            print(base.detail, file=sys.stderr)
            raise SystemExit("the tests fail without a mutant: fix that first")
    for m in chosen:
        r = run_one(m, list(m.tests), files, args.timeout, args.keep)
        results.append(r)
        extra = f" by {', '.join(r.caught_by)}" if r.caught_by else ""
        extra += f": {r.detail[:300]}" if r.detail else ""
        print(f"{m.id}: {r.result} in {r.seconds:g}s{extra}", flush=True)
    print()
    print(_table(results))
    _write(results, partial=bool(args.only))
    bad = [r.id for r in results if r.result != "caught"]
    if bad:
        print(f"\nnot caught: {', '.join(bad)}", file=sys.stderr)
    sys.exit(1 if bad else 0)


def _write(results: list[Result], partial: bool) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(  # uncommitted changes to what was tested (the results folder aside; untracked
        # files such as a scratch clone's .venv link are not what was tested)
        ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
        cwd=REPO,
        capture_output=True,
        text=True,
    ).stdout.strip()
    stamp = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.stdout.strip() + ("+changes" if dirty else ""),
        "machine": f"{platform.machine()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
    }
    previous: dict[str, dict[str, object]] = {}
    if partial and RESULTS.exists():
        previous = {m["id"]: m for m in json.loads(RESULTS.read_text()).get("mutants", [])}
    for r in results:
        previous[r.id] = {**asdict(r), **stamp}
    order = [m.id for m in MUTANTS]
    doc: dict[str, object] = {
        "command": "python -m bench mutants",
        **stamp,
        "mutants": sorted(previous.values(), key=lambda d: order.index(str(d["id"])) if d["id"] in order else 999),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
